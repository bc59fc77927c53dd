/**
 * Cursor pagination of `GET /jobs` and `GET /job/{id}/results`. Items are
 * listed oldest first by a sequence number that never changes, so a cursor
 * stays valid while new items arrive: reading `links.self` of the last page
 * again later also returns what was added since.
 */
import { PER_PAGE_DEFAULT, PER_PAGE_MAX, PER_PAGE_MIN, type Page } from '../jobs/protocol.ts';
import { EmulatorRejection } from './emulator-rejection.ts';

export interface PageQuery {
  perPage: number;
  cursor: Cursor | undefined;
}

/** Position of a page: the items after, or before, a sequence number. */
interface Cursor {
  direction: 'after' | 'before';
  seq: number;
}

function encodeCursor(cursor: Cursor): string {
  return Buffer.from(`${cursor.direction}:${cursor.seq}`).toString('base64url');
}

function decodeCursor(token: string): Cursor | undefined {
  const match = /^(after|before):(-?[0-9]{1,15})$/.exec(Buffer.from(token, 'base64url').toString('utf8'));
  if (match === null) {
    return undefined;
  }
  return { direction: match[1] as Cursor['direction'], seq: Number(match[2]) };
}

/** Reads `per_page` and `cursor`, rejecting any other parameter and out-of-range values with 422. */
export function parsePageQuery(params: URLSearchParams): PageQuery {
  for (const name of params.keys()) {
    if (name !== 'per_page' && name !== 'cursor') {
      throw new EmulatorRejection(
        422,
        'invalid_value',
        `unknown query parameter ${JSON.stringify(name)}; listings accept per_page and cursor`,
      );
    }
  }
  const perPageText = params.get('per_page');
  let perPage = PER_PAGE_DEFAULT;
  if (perPageText !== null) {
    perPage = /^[0-9]{1,9}$/.test(perPageText) ? Number(perPageText) : Number.NaN;
    if (!(perPage >= PER_PAGE_MIN && perPage <= PER_PAGE_MAX)) {
      throw new EmulatorRejection(
        422,
        'invalid_value',
        `per_page must be an integer from ${PER_PAGE_MIN} to ${PER_PAGE_MAX}, got ${JSON.stringify(perPageText)}`,
      );
    }
  }
  const cursorText = params.get('cursor');
  let cursor: Cursor | undefined;
  if (cursorText !== null) {
    cursor = decodeCursor(cursorText);
    if (cursor === undefined) {
      throw new EmulatorRejection(
        422,
        'invalid_value',
        `cursor ${JSON.stringify(cursorText)} is not a cursor from links.prev or links.next; start without one`,
      );
    }
  }
  return { perPage, cursor };
}

/**
 * Cuts one page out of `items`, which must be sorted by ascending `seqOf`.
 * `linkTo` builds an absolute URL of the same listing for a query string.
 */
export function paginate<T, Out>(
  items: readonly T[],
  seqOf: (item: T) => number,
  toOutput: (item: T) => Out,
  query: PageQuery,
  linkTo: (params: URLSearchParams) => string,
): Page<Out> {
  let start: number;
  let end: number;
  const cursor = query.cursor;
  if (cursor === undefined) {
    start = 0;
    end = Math.min(items.length, query.perPage);
  } else if (cursor.direction === 'after') {
    start = firstIndexAbove(items, seqOf, cursor.seq);
    end = Math.min(items.length, start + query.perPage);
  } else {
    end = firstIndexAbove(items, seqOf, cursor.seq - 1);
    start = Math.max(0, end - query.perPage);
  }

  const link = (next: Cursor | undefined): string => {
    const params = new URLSearchParams({ per_page: String(query.perPage) });
    if (next !== undefined) {
      params.set('cursor', encodeCursor(next));
    }
    return linkTo(params);
  };

  // The sequence numbers that bound this page. On an empty page they come
  // from the cursor itself.
  const first = end > start ? items[start] : undefined;
  const last = end > start ? items[end - 1] : undefined;
  let boundaryBefore: number | undefined;
  let boundaryAfter: number | undefined;
  if (first !== undefined && last !== undefined) {
    boundaryBefore = seqOf(first);
    boundaryAfter = seqOf(last);
  } else if (cursor?.direction === 'after') {
    boundaryBefore = cursor.seq + 1;
  } else if (cursor?.direction === 'before') {
    boundaryAfter = cursor.seq - 1;
  }

  return {
    meta: { total_count: items.length, per_page: query.perPage },
    links: {
      self: link(cursor),
      prev: start > 0 && boundaryBefore !== undefined ? link({ direction: 'before', seq: boundaryBefore }) : null,
      next: end < items.length && boundaryAfter !== undefined ? link({ direction: 'after', seq: boundaryAfter }) : null,
    },
    data: items.slice(start, end).map(toOutput),
  };
}

/** Index of the first item whose sequence number is greater than `seq` (binary search). */
function firstIndexAbove<T>(items: readonly T[], seqOf: (item: T) => number, seq: number): number {
  let low = 0;
  let high = items.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    const item = items[middle] as T;
    if (seqOf(item) <= seq) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  return low;
}
