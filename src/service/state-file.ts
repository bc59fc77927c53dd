/**
 * The agent's state file, `<state_dir>/state.json`: the jobs this agent
 * created and has not yet seen finalized. After a crash or SIGKILL the next
 * start reads it to find and finalize those jobs.
 *
 * Every write replaces the whole file by writing a temporary file, flushing
 * it to disk and renaming it over the old one, so a reader sees either the
 * old or the new content, never a partial file.
 */
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { AgentError } from '../errors.ts';

/** One job recorded in the state file. */
export interface StateJobEntry {
  job_id: string;
  /** Name of the job in the config. */
  name: string;
  /** API base URL the job was created on; recovery only touches jobs of the configured one. */
  base_url: string;
  /** When the agent created the job, as an ISO 8601 time on the agent's clock. */
  created_at: string;
  /** Process that created the job. */
  pid: number;
  /** Linux boot ID at creation; a recorded pid means nothing after a reboot. */
  boot_id?: string;
}

interface StateDocument {
  version: 1;
  jobs: StateJobEntry[];
}

export const STATE_FILE_NAME = 'state.json';

/** Reads and rewrites the state file. Writes are queued, so concurrent updates never interleave. */
export class StateFile {
  readonly path: string;
  private readonly dir: string;
  private entries = new Map<string, StateJobEntry>();
  private writeQueue: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.dir = stateDir;
    this.path = join(stateDir, STATE_FILE_NAME);
  }

  /**
   * Reads the file and returns its entries; a missing file has none. A file
   * that is not a state file is renamed to `state.json.invalid`, so that the
   * next write does not destroy what an operator may want to inspect.
   *
   * @throws AgentError `ERR_STATE_FILE` when the file cannot be read or is not a state file.
   */
  async load(): Promise<StateJobEntry[]> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        this.entries = new Map();
        return [];
      }
      throw new AgentError('ERR_STATE_FILE', `cannot read state file ${this.path}: ${(error as Error).message}`, { cause: error });
    }
    const parsed = parseStateDocument(text);
    if (typeof parsed === 'string') {
      const invalidPath = `${this.path}.invalid`;
      await rename(this.path, invalidPath).catch(() => undefined);
      this.entries = new Map();
      throw new AgentError(
        'ERR_STATE_FILE',
        `state file ${this.path} ${parsed}; moved it to ${invalidPath}, so jobs it listed are not recovered (check them with modulate-agent jobs list)`,
      );
    }
    this.entries = new Map(parsed.map((entry) => [entry.job_id, entry]));
    return parsed;
  }

  get jobs(): StateJobEntry[] {
    return [...this.entries.values()];
  }

  /** Records a job; resolves once the file on disk contains it. */
  add(entry: StateJobEntry): Promise<void> {
    this.entries.set(entry.job_id, entry);
    return this.save();
  }

  /** Forgets a job; resolves once the file on disk no longer contains it. */
  remove(jobId: string): Promise<void> {
    if (!this.entries.delete(jobId)) {
      return this.writeQueue;
    }
    return this.save();
  }

  private save(): Promise<void> {
    const document: StateDocument = { version: 1, jobs: this.jobs };
    const text = `${JSON.stringify(document, null, 2)}\n`;
    const write = this.writeQueue.then(() => this.writeAtomically(text));
    // A failed write must not block the writes queued after it.
    this.writeQueue = write.catch(() => undefined);
    return write;
  }

  private async writeAtomically(text: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const temporary = `${this.path}.${process.pid}.tmp`;
    try {
      const handle = await open(temporary, 'w', 0o600);
      try {
        await handle.writeFile(text);
        // Flushed before the rename, so that a power loss cannot leave an empty file under the final name.
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, this.path);
    } catch (error) {
      await rm(temporary, { force: true });
      throw new AgentError('ERR_STATE_FILE', `cannot write state file ${this.path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
}

/** Returns the valid entries of a state document, or why the text is not one. */
function parseStateDocument(text: string): StateJobEntry[] | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return `is not valid JSON (${(error as Error).message})`;
  }
  const jobs = (parsed as { jobs?: unknown } | null)?.jobs;
  if (!Array.isArray(jobs)) {
    return 'has no "jobs" list';
  }
  return jobs.filter(isStateJobEntry);
}

function isStateJobEntry(value: unknown): value is StateJobEntry {
  const entry = value as Partial<StateJobEntry> | null;
  return (
    typeof entry?.job_id === 'string' &&
    typeof entry.name === 'string' &&
    typeof entry.base_url === 'string' &&
    typeof entry.created_at === 'string' &&
    typeof entry.pid === 'number'
  );
}
