/**
 * Reads and checks the API key. No message built here ever contains the key
 * or any part of it.
 */
import { readFile } from 'node:fs/promises';

/** Reads a secret file as UTF-8 text; tests pass their own. */
export type ReadSecretFile = (path: string) => Promise<string>;

export const readSecretFileFromDisk: ReadSecretFile = (path) => readFile(path, 'utf8');

export type ApiKeyResult = { ok: true; apiKey: string } | { ok: false; message: string };

const SYSTEMD_HINT =
  'under systemd, pass the key with LoadCredential=api_key:/etc/modulate-agent/api_key ' +
  'and set api_key_file: ${CREDENTIALS_DIRECTORY}/api_key';

/**
 * Returns why `apiKey` cannot be sent in an HTTP header, or undefined when
 * it can. Whitespace at either end is almost always a copy-and-paste mistake,
 * and the server would reject the key with no hint why.
 */
export function checkApiKeyText(apiKey: string, source: string): string | undefined {
  if (apiKey === '') {
    return `${source} is empty; write the key into it`;
  }
  if (/[\r\n]/.test(apiKey)) {
    return `${source} contains a line break inside the key; it must hold the key alone on one line`;
  }
  if (apiKey.trim() !== apiKey) {
    return `${source} has spaces or tabs around the key; remove them`;
  }
  // Control characters cannot be sent in an HTTP header.
  if (/[\u0000-\u001f\u007f]/.test(apiKey)) {
    return `${source} contains control characters; it must hold only the key`;
  }
  return undefined;
}

function describeReadError(path: string, error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return `API key file ${path} does not exist (ENOENT); create it holding only the key, or ${SYSTEMD_HINT}`;
    case 'EACCES':
    case 'EPERM':
      return (
        `cannot read API key file ${path}: permission denied (${code}); make it readable by the user ` +
        `the agent runs as, or ${SYSTEMD_HINT}`
      );
    case 'EISDIR':
      return `API key file ${path} is a directory (EISDIR); point api_key_file at the file that holds the key`;
    default:
      return `cannot read API key file ${path}: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/**
 * Reads the key from `path`. One trailing newline (LF or CRLF) is removed,
 * because editors and `echo` add one; anything else around the key is an error.
 */
export async function readApiKeyFile(path: string, readSecretFile: ReadSecretFile): Promise<ApiKeyResult> {
  let text: string;
  try {
    text = await readSecretFile(path);
  } catch (error) {
    return { ok: false, message: describeReadError(path, error) };
  }
  const apiKey = text.replace(/\r?\n$/, '');
  const problem = checkApiKeyText(apiKey, `API key file ${path}`);
  return problem === undefined ? { ok: true, apiKey } : { ok: false, message: problem };
}
