// queue-otel live dashboard: polls /api/snapshot and draws each queue with uPlot.
// window.queueOtel exposes the last snapshot and the charts (their data), for tests and curious users.
(function () {
  'use strict';

  var PALETTE = ['#5eead4', '#60a5fa', '#f472b6', '#fbbf24', '#a78bfa', '#34d399', '#fb923c', '#22d3ee', '#e879f9', '#a3e635'];
  var OUTCOME_COLORS = { completed: '#4ade80', retried: '#fbbf24', failed: '#f87171', deferred: '#a78bfa' };
  var STATE_COLORS = {
    waiting: '#60a5fa', active: '#5eead4', delayed: '#a78bfa', prioritized: '#22d3ee',
    'waiting-children': '#e879f9', paused: '#94a3b8', failed: '#f87171', completed: '#4ade80',
  };
  var MUTED = '#8b98a9';
  var INTERPOLATED = 'Interpolated within the buckets of the queue.job.wait.duration histogram, as Prometheus histogram_quantile does: the true value lies in the same bucket.';
  var GRID = '#263241';

  var state = { snapshot: null, charts: new Map(), selected: 'all', failures: 0, lastOk: 0 };
  window.queueOtel = state;

  // ---------------------------------------------------------------- formatting
  function num(v, digits) {
    if (v == null || !isFinite(v)) return '–';
    var a = Math.abs(v);
    var d = digits != null ? digits : a >= 100 ? 0 : a >= 10 ? 1 : 2;
    return v.toFixed(d);
  }
  function bytes(v) {
    if (v == null || !isFinite(v)) return '–';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return num(v, i === 0 ? 0 : undefined) + ' ' + units[i];
  }
  function seconds(v) {
    if (v == null || !isFinite(v)) return '–';
    if (v === 0) return '0 s';
    if (v < 1) return num(v * 1000, v < 0.01 ? 1 : 0) + ' ms';
    if (v < 120) return num(v) + ' s';
    if (v < 7200) return num(v / 60, 1) + ' min';
    return num(v / 3600, 1) + ' h';
  }
  function perSecond(v) { return v == null ? '–' : num(v) + '/s'; }
  /** CPU-seconds per second as a share of one core. */
  function cores(v) { return v == null || !isFinite(v) ? '–' : num(v * 100, v * 100 < 10 ? 1 : 0) + '%'; }
  function clock(t) {
    var d = new Date(t * 1000);
    var two = function (n) { return (n < 10 ? '0' : '') + n; };
    return two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds());
  }
  function plain(v) { return num(v); }
  /** How old a state figure may be: it comes from the last read of the queue's store. */
  function upTo(maxAgeS) { return maxAgeS < 120 ? Math.round(maxAgeS) + ' s' : seconds(maxAgeS); }
  function asOf(maxAgeS) { return 'as of ≤ ' + upTo(maxAgeS) + ' ago'; }

  function colorFor(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) | 0;
    return PALETTE[Math.abs(h) % PALETTE.length];
  }
  function last(values) {
    if (!values) return null;
    for (var i = values.length - 1; i >= 0; i--) if (values[i] != null) return values[i];
    return null;
  }
  /** Mean of the non-null values of the last n points. */
  function recent(values, n) {
    if (!values) return null;
    var sum = 0, count = 0;
    for (var i = Math.max(0, values.length - n); i < values.length; i++) if (values[i] != null) { sum += values[i]; count++; }
    return count ? sum / count : null;
  }
  function sumLines(lines, length) {
    var out = new Array(length).fill(null);
    Object.keys(lines).forEach(function (k) {
      lines[k].forEach(function (v, i) { if (v != null) out[i] = (out[i] || 0) + v; });
    });
    return out;
  }
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) {
      if (k === 'text') e.textContent = attrs[k]; else if (k === 'html') e.innerHTML = attrs[k]; else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  // ---------------------------------------------------------------- charts
  /** The charts of one queue: id, title, what it says, lines [{label, values, color, dash}], formatter. */
  function chartSpecs(q, n) {
    var jobs = Object.keys(q.busy).sort();
    var byJob = function (lines) {
      return Object.keys(lines).sort().map(function (job) { return { label: job, values: lines[job], color: colorFor(job) }; });
    };
    var busyLines = byJob(q.busy);
    busyLines.push({ label: 'concurrency', values: q.concurrency, color: '#e6edf3', dash: [6, 5], fill: false });
    return [
      { id: 'busy', wide: true, title: 'Busy workers', note: 'rate of queue.job.busy.time by job name, against the concurrency limit', fmt: plain, lines: busyLines },
      {
        id: 'throughput', title: 'Throughput',
        note: 'attempts ended per second, by outcome (failed: no attempt left; deferred: put off on purpose, by a delay, its children or a rate limit)', fmt: perSecond,
        lines: ['completed', 'retried', 'failed', 'deferred'].filter(function (o) { return q.throughput[o]; }).map(function (o) {
          return { label: o, values: q.throughput[o], color: OUTCOME_COLORS[o] };
        }),
      },
      {
        id: 'wait', title: 'Wait before start',
        note: 'queue.job.wait.duration p50 and p95 over the window, interpolated within histogram buckets (as histogram_quantile does)', fmt: seconds,
        lines: [
          { label: 'p50', values: q.wait.p50, color: '#60a5fa' },
          { label: 'p95', values: q.wait.p95, color: '#f472b6' },
        ],
      },
      {
        id: 'depth', title: 'Queue depth', note: 'queue.job.count by state; each point up to ' + upTo(q.stateMaxAgeS.counts) + ' older than its time', fmt: plain,
        lines: Object.keys(q.depth).sort().map(function (s) {
          // completed is history, not backlog: off until its legend entry is clicked.
          return { label: s, values: q.depth[s], color: STATE_COLORS[s] || colorFor(s), show: s !== 'completed' };
        }),
      },
      {
        id: 'age', title: 'Oldest',
        note: 'oldest ready job waiting and oldest dead letter (which jobs they are: up to ' + upTo(q.stateMaxAgeS.oldest) + ' old), longest-running job', fmt: seconds,
        lines: [
          { label: 'waiting', values: q.age.waiting, color: '#60a5fa' },
          { label: 'dead letter', values: q.age.failed, color: '#f87171' },
          { label: 'running', values: q.age.running, color: '#5eead4' },
        ],
      },
      // The queue's rate limiter: shown once it held a worker of this process back.
      {
        id: 'ratelimit', title: 'Rate limiter',
        note: 'queue.worker.rate_limit.duration: share of the time workers were held back by the queue\'s rate limiter (summed over workers, counted as each wait ends)',
        fmt: cores,
        lines: q.rateLimit && q.rateLimit.held ? [{ label: 'held back', values: q.rateLimit.held, color: '#fb923c' }] : [],
      },
      { id: 'memory', wide: true, title: 'Memory by job', note: 'queue.job.memory.usage: memory held by running jobs', fmt: bytes, lines: byJob(q.memory) },
      { id: 'cpu', title: 'CPU by job', note: 'rate of queue.job.cpu.time, as a share of one core', fmt: cores, lines: byJob(q.cpu) },
      // Scheduled runs (job schedulers, repeatable jobs, cron entries): shown once a queue has one.
      { id: 'schedules', title: 'Schedule lag', note: 'queue.schedule.lag of each schedule\'s latest run: how late it started after it was due', fmt: seconds, lines: byJob(q.scheduleLag || {}) },
    ].filter(function (c) { return c.lines.length > 0 || c.id === 'busy'; }).map(function (c) { c.jobs = jobs; return c; });
  }

  function makePlot(spec, data, holder) {
    var width = Math.max(280, holder.clientWidth || 440);
    var opts = {
      width: width,
      height: 200,
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      legend: { live: true },
      scales: {
        x: { time: true },
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.12 : 1]; } },
      },
      axes: [
        {
          stroke: MUTED, grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID, width: 1 }, font: '11px system-ui, sans-serif',
          space: 70,
          incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200],
          values: function (u, vals) { return vals.map(clock); },
        },
        {
          stroke: MUTED, grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID, width: 1 }, size: 64,
          font: '11px system-ui, sans-serif',
          values: function (u, vals) { return ticks(spec.fmt, vals); },
        },
      ],
      series: [{ label: 'time', value: function (u, v) { return v == null ? '–' : clock(v); } }].concat(spec.lines.map(function (l) {
        return {
          label: l.label,
          stroke: l.color,
          width: 2,
          dash: l.dash,
          show: l.show !== false,
          fill: l.fill === false ? undefined : l.color + '1f',
          points: { show: false },
          spanGaps: false,
          value: function (u, v) { return spec.fmt(v); },
        };
      })),
    };
    var plot = new uPlot(opts, data, holder);
    holder.addEventListener('mouseleave', function () { showLatest(plot); });
    showLatest(plot);
    return plot;
  }

  /** Axis labels with as many decimals as the tick spacing needs (0.5, 1.0, 1.5 rather than 0.50, 1.00). */
  function ticks(fmt, vals) {
    var step = vals.length > 1 ? Math.abs(vals[1] - vals[0]) : 1;
    var scale = fmt === cores ? 100 : 1;
    var suffix = fmt === cores ? '%' : fmt === perSecond ? '/s' : '';
    if (fmt !== plain && fmt !== cores && fmt !== perSecond) return vals.map(fmt);
    var digits = step * scale >= 1 || step === 0 ? 0 : Math.min(4, Math.ceil(-Math.log10(step * scale)));
    return vals.map(function (v) { return v == null ? '' : (v * scale).toFixed(digits) + suffix; });
  }

  /** Without a cursor on the chart, the legend shows the latest values rather than dashes. */
  function showLatest(plot) {
    if (plot.cursor.left != null && plot.cursor.left >= 0) return;
    var n = plot.data[0].length;
    if (n > 0) plot.setLegend({ idx: n - 1 });
  }

  function renderQueue(q, snapshot, container) {
    var n = snapshot.t.length;
    var perTick = Math.max(1, Math.round(snapshot.windowS / snapshot.intervalS));
    var section = container.querySelector('section[data-queue="' + CSS.escape(q.name) + '"]');
    if (!section) {
      section = el('section', { class: 'queue', 'data-queue': q.name }, [
        el('h2', null, [el('span', { text: q.name }), el('span', { class: 'system', text: q.system })]),
        el('div', { class: 'tiles' }),
        el('div', { class: 'charts' }),
        el('div', { class: 'table' }),
        el('div', { class: 'schedule-list' }),
      ]);
      container.appendChild(section);
    }

    // Tiles: the latest figures.
    var busy = last(sumLines(q.busy, n));
    var conc = last(q.concurrency);
    var done = recent(q.throughput.completed, perTick);
    var failed = recent(q.throughput.failed, perTick);
    var waiting = (last(q.depth.waiting) || 0) + (last(q.depth.prioritized) || 0);
    var held = last(sumLines(q.memory, n));
    var deferred = recent(q.throughput.deferred, perTick);
    var limited = q.rateLimit || {};
    var tiles = [
      { k: 'busy workers', v: num(busy, 1), small: conc != null ? ' / ' + num(conc, 0) : '', bar: conc ? Math.min(1, (busy || 0) / conc) : null },
      { k: 'completed', v: num(done), small: ' /s' },
      { k: 'failed (dead letters)', v: num(failed == null ? null : failed * 60), small: ' /min', cls: failed > 0 ? 'bad' : '' },
      { k: 'waiting', v: num(waiting, 0), small: '', note: asOf(q.stateMaxAgeS.counts) },
      { k: 'oldest waiting', v: seconds(last(q.age.waiting)), small: '', cls: last(q.age.waiting) > 60 ? 'warn' : '', note: asOf(q.stateMaxAgeS.oldest) },
      { k: 'in failed set', v: num(last(q.depth.failed), 0), small: '', cls: last(q.depth.failed) > 0 ? 'warn' : '', note: asOf(q.stateMaxAgeS.counts) },
      { k: 'memory held', v: bytes(held), small: '' },
    ];
    // Shown once the queue has them: attempts put off on purpose, and its rate limiter's waits.
    if (q.throughput.deferred) tiles.splice(2, 0, { k: 'deferred', v: num(deferred), small: ' /s' });
    if (limited.held) {
      var waitsPerS = recent(limited.waits, perTick);
      tiles.push({ k: 'rate-limited', v: cores(recent(limited.held, perTick)), small: ' of the time', note: num(waitsPerS == null ? null : waitsPerS * 60, 0) + ' waits /min' });
    }
    var tilesEl = section.querySelector('.tiles');
    tilesEl.innerHTML = '';
    tiles.forEach(function (t) {
      var tile = el('div', { class: 'tile ' + (t.cls || '') }, [el('div', { class: 'k', text: t.k }), el('div', { class: 'v', html: '' })]);
      tile.querySelector('.v').textContent = t.v;
      if (t.small) tile.querySelector('.v').appendChild(el('small', { text: t.small }));
      if (t.bar != null) tile.appendChild(el('div', { class: 'bar' }, [el('i', { style: 'width:' + Math.round(t.bar * 100) + '%' })]));
      if (t.note) tile.appendChild(el('div', { class: 'note', text: t.note }));
      tilesEl.appendChild(tile);
    });

    // Charts: created once per set of lines, then fed new data.
    var chartsEl = section.querySelector('.charts');
    var specs = chartSpecs(q, n);
    specs.forEach(function (spec) {
      var key = q.name + '/' + spec.id;
      var signature = spec.lines.map(function (l) { return l.label; }).join('|');
      var data = [snapshot.t].concat(spec.lines.map(function (l) { return l.values; }));
      var entry = state.charts.get(key);
      if (entry && entry.signature !== signature) {
        entry.plot.destroy();
        entry.card.querySelector('.plot').innerHTML = '';
        entry.signature = signature;
        entry.plot = makePlot(spec, data, entry.card.querySelector('.plot'));
        entry.spec = spec;
        return;
      }
      if (entry) {
        entry.plot.setData(data);
        showLatest(entry.plot);
        entry.spec = spec;
        return;
      }
      var card = el('div', { class: 'card' + (spec.wide ? ' wide' : ''), 'data-chart': spec.id }, [
        el('h3', { text: spec.title }), el('p', { text: spec.note }), el('div', { class: 'plot' }),
      ]);
      chartsEl.appendChild(card);
      state.charts.set(key, { card: card, signature: signature, spec: spec, plot: makePlot(spec, data, card.querySelector('.plot')) });
    });

    // Cards in the same order whenever a chart first appears (depth comes with the first state read).
    var wanted = specs.map(function (spec) { return spec.id; }).join(' ');
    var current = Array.prototype.map.call(chartsEl.children, function (c) { return c.getAttribute('data-chart'); }).join(' ');
    if (wanted !== current) {
      specs.forEach(function (spec) { chartsEl.appendChild(state.charts.get(q.name + '/' + spec.id).card); });
    }

    // Table: one row per job name; a profile column when a job of this queue was profiled.
    var profiles = {};
    (snapshot.profiles || []).forEach(function (p) {
      if (p.queue === q.name && p.system === q.system) profiles[p.job == null ? '' : p.job] = p;
    });
    var profiled = Object.keys(profiles).length > 0;
    var rows = q.jobs.map(function (j) {
      var failCls = j.failed > 0 ? 'bad' : '';
      var reasons = Object.keys(j.deferrals || {}).sort().map(function (r) { return r + ' ' + perSecond(j.deferrals[r]); }).join(', ');
      var p = profiles[j.name];
      var profileCell = !profiled ? '' : '<td>' + (p ? '<a class="profile" download href="' + escapeHtml(p.url) + '" title="CPU profile of this job\'s own code, written ' +
        escapeHtml(new Date(p.writtenAt).toLocaleString()) + ' (open in Chrome DevTools or speedscope)">' + clock(p.writtenAt / 1000) + '</a>' : '–') + '</td>';
      return '<tr><td><span class="swatch" style="background:' + colorFor(j.name) + '"></span>' + escapeHtml(j.name) + '</td>' +
        '<td>' + num(j.busy, 2) + '</td><td>' + num(j.active, 0) + '</td>' +
        '<td>' + perSecond(j.completed) + '</td><td class="' + (j.retried > 0 ? 'warn' : '') + '">' + perSecond(j.retried) + '</td>' +
        '<td class="' + failCls + '">' + perSecond(j.failed) + '</td>' +
        '<td' + (reasons ? ' title="' + escapeHtml(reasons) + '"' : '') + '>' + perSecond(j.deferred) + '</td>' +
        '<td>' + seconds(j.waitP50) + '</td><td>' + seconds(j.waitP95) + '</td>' +
        '<td>' + cores(j.cpu) + '</td><td>' + bytes(j.memory) + '</td><td>' + seconds(j.runningOldest) + '</td>' + profileCell + '</tr>';
    }).join('');
    section.querySelector('.table').innerHTML = q.jobs.length === 0 ? '' :
      '<table class="jobs"><thead><tr><th>job name</th><th>busy</th><th>running</th><th>completed</th><th>retried</th><th>failed</th>' +
      '<th title="put off on purpose (a delay, its children, a rate limit); the reasons on each cell">deferred</th>' +
      '<th title="' + INTERPOLATED + '">wait p50 ≈</th><th title="' + INTERPOLATED + '">wait p95 ≈</th>' +
      '<th>cpu</th><th>memory</th><th>longest run</th>' + (profiled ? '<th>latest profile</th>' : '') +
      '</tr></thead><tbody>' + rows + '</tbody></table>';

    // Schedules: one row per schedule, with how long ago it last ran and the runs it missed.
    var now = snapshot.t.length ? snapshot.t[snapshot.t.length - 1] : null;
    var schedules = q.schedules || [];
    var scheduleRows = schedules.map(function (r) {
      return '<tr><td><span class="swatch" style="background:' + colorFor(r.name) + '"></span>' + escapeHtml(r.name) + '</td>' +
        '<td>' + num(r.runs, 0) + '</td><td class="' + (r.lastLag > 60 ? 'warn' : '') + '">' + seconds(r.lastLag) + '</td>' +
        '<td>' + (r.lastRunAt == null || now == null ? '–' : seconds(Math.max(0, now - r.lastRunAt)) + ' ago') + '</td>' +
        '<td class="' + (r.missed > 0 ? 'bad' : '') + '">' + num(r.missed, 0) + '</td></tr>';
    }).join('');
    section.querySelector('.schedule-list').innerHTML = schedules.length === 0 ? '' :
      '<table class="jobs schedules"><thead><tr><th>schedule</th><th>runs</th><th>last lag</th><th>last run</th><th>missed</th></tr></thead><tbody>' +
      scheduleRows + '</tbody></table>';
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]; });
  }

  function renderNav(snapshot) {
    var nav = document.getElementById('queues');
    var names = ['all'].concat(snapshot.queues.map(function (q) { return q.name; }));
    if (nav.getAttribute('data-names') === names.join('\n') && nav.querySelector('.on')?.getAttribute('data-q') === state.selected) return;
    nav.setAttribute('data-names', names.join('\n'));
    nav.innerHTML = '';
    names.forEach(function (name) {
      var b = el('button', { type: 'button', 'data-q': name, class: name === state.selected ? 'on' : '', text: name === 'all' ? 'all queues' : name });
      b.addEventListener('click', function () { state.selected = name; render(state.snapshot); });
      nav.appendChild(b);
    });
  }

  function render(snapshot) {
    if (!snapshot) return;
    document.getElementById('service').textContent = snapshot.service ? 'service ' + snapshot.service : '';
    document.getElementById('interval').textContent = String(snapshot.intervalS);
    document.getElementById('window').textContent = String(snapshot.windowS);
    document.getElementById('state-interval').textContent = String(snapshot.stateIntervalS);
    if (snapshot.service) document.title = snapshot.service + ' · queue-otel live';
    renderNav(snapshot);
    var main = document.getElementById('main');
    if (snapshot.queues.length === 0) return;
    var empty = main.querySelector('.empty');
    if (empty) empty.remove();
    snapshot.queues.forEach(function (q) {
      renderQueue(q, snapshot, main);
      var section = main.querySelector('section[data-queue="' + CSS.escape(q.name) + '"]');
      section.hidden = state.selected !== 'all' && state.selected !== q.name;
    });
  }

  function poll() {
    fetch('api/snapshot', { cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (snapshot) {
        state.snapshot = snapshot;
        state.lastOk = Date.now();
        state.failures = 0;
        render(snapshot);
        var status = document.getElementById('status');
        status.className = 'muted';
        status.textContent = 'updated ' + new Date().toLocaleTimeString() + ' · ' + snapshot.queues.length + ' queue(s)';
      })
      .catch(function (error) {
        state.failures++;
        var status = document.getElementById('status');
        status.className = 'stale';
        status.textContent = 'cannot reach the worker (' + error.message + '); retrying';
      })
      .finally(function () {
        var every = (state.snapshot && state.snapshot.intervalS ? state.snapshot.intervalS : 2) * 1000;
        setTimeout(poll, state.failures > 0 ? Math.min(10000, every * (state.failures + 1)) : every);
      });
  }

  var resizeTimer;
  window.addEventListener('resize', function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      state.charts.forEach(function (entry) {
        var holder = entry.card.querySelector('.plot');
        entry.plot.setSize({ width: Math.max(280, holder.clientWidth), height: 200 });
      });
    }, 100);
  });

  poll();
})();
