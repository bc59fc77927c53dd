/**
 * Maps key paths of the parsed config back to lines and columns of the YAML
 * source, so that every error can point at the text the operator wrote.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

export type KeyPath = readonly PropertyKey[];

export interface SourcePosition {
  line: number;
  column: number;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Formats a key path as `jobs[0].streams[1].source.type`. Keys that are not
 * identifiers are quoted in brackets: `payload_types["111"]`.
 */
export function formatKeyPath(path: KeyPath): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') {
      text += `[${segment}]`;
    } else {
      const key = String(segment);
      if (IDENTIFIER.test(key)) {
        text += text === '' ? key : `.${key}`;
      } else {
        text += `[${JSON.stringify(key)}]`;
      }
    }
  }
  return text;
}

/** Returns the key of a YAML map entry as a string, the form it has in the loaded object. */
function mapKeyText(key: unknown): string {
  return isScalar(key) ? String(key.value) : String(key);
}

interface FoundNode {
  /** Deepest node on the path that exists. */
  node: Node;
  /** Key node of the map entry holding `node`, when `node` is a map value. */
  keyNode: Node | undefined;
  /** True when the whole path exists. */
  complete: boolean;
}

/**
 * Walks `path` through the document and returns the deepest node found.
 * Map keys match by their string form because the loaded object has string
 * keys only (YAML `111:` is the number 111 in the document).
 */
function findNode(doc: Document, path: KeyPath): FoundNode | undefined {
  let node: unknown = doc.contents;
  if (node === null || node === undefined) {
    return undefined;
  }
  let keyNode: Node | undefined;
  for (const [index, segment] of path.entries()) {
    if (isAlias(node)) {
      node = node.resolve(doc);
    }
    let next: unknown;
    let nextKey: Node | undefined;
    if (isMap(node)) {
      const pair = node.items.find((item) => mapKeyText(item.key) === String(segment));
      next = pair?.value ?? undefined;
      nextKey = pair?.key as Node | undefined;
      // `key:` with no value has a null value node; the key still locates it.
      if (pair !== undefined && (next === null || next === undefined)) {
        return { node: nextKey ?? (node as Node), keyNode: nextKey, complete: index === path.length - 1 };
      }
    } else if (isSeq(node) && typeof segment === 'number') {
      next = node.items[segment];
    }
    if (next === undefined || next === null) {
      return { node: node as Node, keyNode, complete: false };
    }
    node = next;
    keyNode = nextKey;
  }
  return { node: node as Node, keyNode, complete: true };
}

function positionOf(node: Node | undefined, lineCounter: LineCounter): SourcePosition | undefined {
  const offset = node?.range?.[0];
  if (offset === undefined) {
    return undefined;
  }
  const { line, col } = lineCounter.linePos(offset);
  return { line, column: col };
}

/**
 * Returns the source position of the value at `path`. With `atKey`, the
 * position of the key itself (for unknown keys). When the path does not exist
 * (a missing key, or a value that came from defaults), the position of the
 * deepest existing parent's key, so the operator still lands near the fix.
 */
export function locateKeyPath(
  doc: Document,
  lineCounter: LineCounter,
  path: KeyPath,
  options: { atKey?: boolean } = {},
): SourcePosition | undefined {
  const found = findNode(doc, path);
  if (found === undefined) {
    return undefined;
  }
  if (found.complete && options.atKey !== true) {
    return positionOf(found.node, lineCounter);
  }
  return positionOf(found.keyNode ?? found.node, lineCounter);
}
