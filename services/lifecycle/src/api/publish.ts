import type { LifecycleCommand } from '@shoal/contracts';
import type { ShoalProducer } from '@shoal/producer';

type Publish = ShoalProducer['publishLifecycleCommand'];

/**
 * The API's commands go to the broker one request at a time: those of one turn of the event loop go
 * together; those that come while a request is on its way wait for its acknowledgement, then go
 * together as the next one (a linger as long as the broker takes). So the producer needs no linger
 * of its own (server.ts: a lone command goes at once) and a busy API still sends few requests. The
 * producer is idempotent with one request in flight: with a 5 ms linger and no gate, every 5 ms made
 * a request of its own, queued behind the others whenever the broker took longer than that to
 * acknowledge. Each publish still settles with its own message's acknowledgement or error (a failed
 * request fails only the commands it carried; the next goes).
 */
export function oneRequestAtATime(publish: Publish): Publish {
  let waiting: { command: LifecycleCommand; settle: (sent: ReturnType<Publish>) => void }[] = [];
  /** A request on its way, or one about to go (the commands of this turn of the event loop join it). */
  let inFlight = false;
  const send = () => {
    const group = waiting;
    waiting = [];
    // one turn: the producer's linger puts the whole group in one request
    const sent = group.map(({ command, settle }) => {
      const published = publish(command);
      settle(published);
      return published;
    });
    void Promise.allSettled(sent).then(() => {
      if (waiting.length > 0) send();
      else inFlight = false;
    });
  };
  return (command) =>
    new Promise<Awaited<ReturnType<Publish>>>((resolve, reject) => {
      waiting.push({ command, settle: (sent) => sent.then(resolve, reject) });
      if (inFlight) return;
      inFlight = true;
      setImmediate(send);
    });
}
