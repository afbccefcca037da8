import type { Attached } from '../../host/plugin.js';
import type { SandboxState, StateStore } from '../state/store.js';
import type { ConfigOf, DataOf, JournalRecord, ResourceKind } from './resources.js';

/**
 * The sandbox's journal, typed by resource kind. Before a resource is made its intent (the config)
 * is written; once it exists the record becomes `done` with what undoes it. Every write is an
 * atomic save of state.json (StateStore), so a crash at any point leaves a record of everything
 * that may exist.
 */
export class Journal {
  constructor(
    readonly state: SandboxState,
    private readonly store: StateStore,
  ) {}

  async intend<K extends ResourceKind>(id: string, kind: K, config: ConfigOf<K>): Promise<void> {
    // The mapped union cannot be built from a generic K without help: the object is exactly the
    // intent member of kind K (see JournalRecord).
    const rec = { id, kind, phase: 'intent', config, at: new Date().toISOString() } as JournalRecord;
    await this.store.putRecord(this.state, rec);
  }

  async done<K extends ResourceKind>(id: string, kind: K, data: Attached<DataOf<K>>): Promise<void> {
    const rec = { id, kind, phase: 'done', data, at: new Date().toISOString() } as JournalRecord;
    await this.store.putRecord(this.state, rec);
  }

  /** Replace the data of a done record (e.g. guest descriptors completed after hotplug). */
  async update<K extends ResourceKind>(id: string, kind: K, data: Attached<DataOf<K>>): Promise<void> {
    const rec = { id, kind, phase: 'done', data, at: new Date().toISOString() } as JournalRecord;
    await this.store.putRecord(this.state, rec, true);
  }

  /** Persist a change made to a done record's data in place (e.g. a share list, a PCI path). */
  save(): Promise<void> {
    return this.store.save(this.state);
  }

  async forget(id: string): Promise<void> {
    await this.store.removeRecord(this.state, id);
  }

  /** The done records of one kind, oldest first. */
  records<K extends ResourceKind>(kind: K): Extract<JournalRecord, { kind: K; phase: 'done' }>[] {
    return this.state.resources.filter(
      (r): r is Extract<JournalRecord, { kind: K; phase: 'done' }> => r.kind === kind && r.phase === 'done',
    );
  }

  has(id: string): boolean {
    return this.state.resources.some((r) => r.id === id);
  }
}
