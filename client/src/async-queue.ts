/**
 * A pushable async iterable: the request side of a client-streaming call.
 *
 * connect-es takes a client stream as an `AsyncIterable` and pulls from it as
 * the transport can send; the writer pushes chunks as they are sealed. The
 * queue has one consumer, never blocks `push` (the writer bounds what it holds
 * itself) and, once `end()` is called, yields what is left and finishes.
 */
export interface AsyncQueue<T> extends AsyncIterable<T> {
  /** Adds an item; ignored after `end()`. */
  push(item: T): void;
  /** No more items: the iteration finishes once the queue is drained. */
  end(): void;
}

export function createAsyncQueue<T>(): AsyncQueue<T> {
  const items: T[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  return {
    push(item) {
      if (ended) return;
      items.push(item);
      notify();
    },
    end() {
      ended = true;
      notify();
    },
    async *[Symbol.asyncIterator]() {
      try {
        for (;;) {
          if (items.length > 0) {
            yield items.shift() as T;
          } else if (ended) {
            return;
          } else {
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
          }
        }
      } finally {
        // The consumer stopped early (the call failed): drop what is left.
        ended = true;
        items.length = 0;
      }
    },
  };
}
