// FlowParents: a flow parent's ready time is known only when this process saw every child finish.
import { describe, it } from 'vitest';
import { FlowParents } from '../src/adapters/flow-parents.js';

describe('FlowParents', () => {
  it('knows a parent when every child was seen finishing, the latest finish, and forgets it when it starts', ({ expect }) => {
    const parents = new FlowParents();
    parents.childFinished('bull:p:1', 1_000);
    expect(parents.readyAt('bull:p:1', 2), 'one of two children seen').toBeUndefined();
    parents.childFinished('bull:p:2', 2_000);
    parents.childFinished('bull:p:2', 1_800);
    expect(parents.readyAt('bull:p:2', 2), 'the latest finish').toBe(2_000);
    expect(parents.readyAt('bull:p:2', 2), 'forgotten once started').toBeUndefined();
    expect(parents.readyAt('bull:p:3', 0), 'a count that is not one').toBeUndefined();
    expect(parents.size).toBe(0);
  });

  it('remembers at most its bound of parents, forgetting the oldest', ({ expect }) => {
    const parents = new FlowParents(3);
    for (let i = 0; i < 10; i++) parents.childFinished(`bull:p:${i}`, i);
    expect(parents.size).toBe(3);
    expect(parents.readyAt('bull:p:0', 1)).toBeUndefined();
    expect(parents.readyAt('bull:p:9', 1)).toBe(9);
  });
});
