import { waitFor } from '../support/wait-for.js';
import { PrivateRabbitMq } from './private-rabbitmq.js';

/** A quorum queue's Raft state as a running node of the cluster sees it. */
export interface QuorumQueueState {
  readonly name: string;
  /** Node name of the leader, or undefined while there is none. */
  readonly leader: string | undefined;
  readonly members: readonly string[];
  /** Members whose Raft server runs now. */
  readonly online: readonly string[];
}

/**
 * Three private RabbitMQ nodes (or `size`) of the suite's own, clustered: the first node starts
 * the cluster and the others join it with `join_cluster`. Every node has its own name, ports,
 * data and log, as a `PrivateRabbitMq` does; they share the machine's Erlang cookie.
 */
export class PrivateRabbitMqCluster {
  readonly nodes: readonly PrivateRabbitMq[];
  /** Nodes whose application was stopped with `stop_app` (the Erlang VM still runs). */
  readonly #appStopped = new Set<PrivateRabbitMq>();

  private constructor(nodes: readonly PrivateRabbitMq[]) {
    this.nodes = nodes;
  }

  static async start(size = 3): Promise<PrivateRabbitMqCluster> {
    // Booting is mostly waiting for the Erlang VM: side by side saves most of it.
    const started = await Promise.allSettled(
      Array.from({ length: size }, () => PrivateRabbitMq.start()),
    );
    const nodes = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const cluster = new PrivateRabbitMqCluster(nodes);
    try {
      const failed = started.find((s) => s.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      const [first, ...others] = nodes;
      for (const node of others) {
        await node.ctl('stop_app');
        await node.ctl('join_cluster', first!.nodeName);
        await node.ctl('start_app');
      }
      await cluster.waitUntilFormed();
    } catch (error) {
      await cluster.destroy();
      throw error;
    }
    return cluster;
  }

  /** Every node's AMQP URL, the first node's first. */
  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  /**
   * The URL list rotated to start at node `i` (modulo the size): clients given different
   * rotations connect to different nodes first, and fail over in the same ring.
   */
  urlsFrom(i: number): string[] {
    const k = i % this.nodes.length;
    return [...this.urls.slice(k), ...this.urls.slice(0, k)];
  }

  node(nodeName: string): PrivateRabbitMq {
    const node = this.nodes.find((n) => n.nodeName === nodeName);
    if (!node) throw new Error(`no node ${nodeName} in the cluster`);
    return node;
  }

  /** Short names for reports: node1, node2, ... */
  label(nodeName: string | undefined): string {
    if (nodeName === undefined) return 'none';
    const i = this.nodes.findIndex((n) => n.nodeName === nodeName);
    return i < 0 ? nodeName : `node${i + 1}`;
  }

  /** Nodes whose Erlang VM runs and whose application was not stopped. */
  get running(): PrivateRabbitMq[] {
    return this.nodes.filter((n) => n.pid !== undefined && !this.#appStopped.has(n));
  }

  /** `rabbitmqctl stop_app`: the node closes its clients' connections and leaves its queues' Raft groups, its VM stays. */
  async stopApp(node: PrivateRabbitMq): Promise<void> {
    this.#appStopped.add(node);
    await node.ctl('stop_app');
  }

  async startApp(node: PrivateRabbitMq): Promise<void> {
    await node.ctl('start_app');
    this.#appStopped.delete(node);
  }

  /** Boots every node that is down and starts every stopped application, then waits for the cluster. */
  async healAll(): Promise<void> {
    await Promise.all(this.nodes.filter((n) => n.pid === undefined).map((n) => n.boot()));
    for (const node of [...this.#appStopped]) await this.startApp(node);
    await this.waitUntilFormed();
  }

  /**
   * Waits until every node sees all of them running. One `eval` asks every node at once: each
   * `rabbitmqctl` call boots an Erlang VM, which takes a second or two on a loaded machine.
   */
  async waitUntilFormed(timeoutMs = 60_000): Promise<void> {
    const all = this.nodes.map((n) => n.nodeName).sort();
    const expected = all.map((n) => `'${n}'`).join(', ');
    let last = '';
    await waitFor(
      `all ${all.length} nodes running in the cluster`,
      async () => {
        last = await this.ctl(
          'eval',
          `[lists:sort(rpc:call(N, rabbit_nodes, all_running, [], 5000)) || N <- [${expected}]].`,
        );
        const views = [...last.matchAll(/\[([^[\]]*)\]/g)].map((m) =>
          [...m[1]!.matchAll(/'([^']+)'/g)].map((n) => n[1]!).join(','),
        );
        return views.length === all.length && views.every((v) => v === all.join(','));
      },
      timeoutMs,
      250,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; last answer: ${last}`, { cause: error });
    });
  }

  /** Runs `rabbitmqctl` on the first node that answers. */
  async ctl(...args: string[]): Promise<string> {
    let last: unknown = new Error('no node is running');
    for (const node of this.running) {
      try {
        return await node.ctl(...args);
      } catch (error) {
        last = error;
      }
    }
    throw last;
  }

  /** The Raft state of each quorum queue in `queues` (`list_queues name leader members online`). */
  async quorumState(queues: readonly string[]): Promise<QuorumQueueState[]> {
    const table = await this.ctl(
      'list_queues',
      '-q',
      '--no-table-headers',
      'name',
      'type',
      'leader',
      'members',
      'online',
    );
    const states: QuorumQueueState[] = [];
    for (const line of table.split('\n')) {
      const [name, type, leader, members, online] = line.split('\t');
      if (name === undefined || !queues.includes(name) || type !== 'quorum') continue;
      states.push({
        name,
        leader: leader && /@/.test(leader) ? leader.trim() : undefined,
        members: nodeList(members),
        online: nodeList(online),
      });
    }
    return states;
  }

  /**
   * The nodes of the channels consuming from `queue`, one entry per consumer. The queue keeps a
   * consumer whose node went down (as suspected down) until that node comes back, so the nodes
   * tell a consumer that came back elsewhere from that one.
   */
  async consumerNodes(queue: string): Promise<string[]> {
    const table = await this.ctl(
      'list_consumers',
      '-q',
      '--no-table-headers',
      'queue_name',
      'channel_pid',
    );
    return table
      .split('\n')
      .filter((line) => line.startsWith(`${queue}\t`))
      .map((line) => /<([^<>]+@[^.<>]+)\./.exec(line)?.[1] ?? 'unknown');
  }

  /** The quorum queue's leader; throws when the queue is not found or has none. */
  async leaderOf(queue: string): Promise<PrivateRabbitMq> {
    const [state] = await this.quorumState([queue]);
    if (!state?.leader) throw new Error(`no leader for ${queue}: ${JSON.stringify(state)}`);
    return this.node(state.leader);
  }

  /**
   * Waits until each quorum queue in `queues` has a leader and all of the cluster's nodes as
   * online members: replicated on every node, and every member caught up enough to serve.
   */
  async waitForHealthyQueues(queues: readonly string[], timeoutMs = 60_000): Promise<void> {
    const all = this.nodes.map((n) => n.nodeName).sort();
    let last: QuorumQueueState[] = [];
    await waitFor(
      `quorum queues ${queues.join(', ')} led and online on all nodes`,
      async () => {
        last = await this.quorumState(queues);
        return (
          last.length === queues.length &&
          last.every(
            (s) =>
              s.leader !== undefined &&
              [...s.members].sort().join(',') === all.join(',') &&
              [...s.online].sort().join(',') === all.join(','),
          )
        );
      },
      timeoutMs,
      250,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; state: ${JSON.stringify(last)}`, { cause: error });
    });
  }

  /** Ready and unacked messages, consumers, and for quorum queues leader and online members. */
  async queueState(queues: readonly string[]): Promise<string> {
    const table = await this.ctl(
      'list_queues',
      '-q',
      '--no-table-headers',
      'name',
      'type',
      'messages_ready',
      'messages_unacknowledged',
      'consumers',
      'leader',
      'online',
    );
    const lines = table
      .split('\n')
      .filter((line) => queues.some((q) => line.startsWith(`${q}\t`)))
      .join('; ');
    return `${lines} (running: ${this.running.map((n) => this.label(n.nodeName)).join(', ')})`;
  }

  logTails(lines = 20): string {
    return this.nodes.map((n) => `--- ${n.nodeName}\n${n.logTail(lines)}`).join('\n');
  }

  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.destroy()));
  }
}

/** `[rabbit@a, rabbit@b]` as printed by `list_queues`, as node names. */
function nodeList(text: string | undefined): string[] {
  return (text ?? '')
    .replace(/^\[|\]$/g, '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.includes('@'));
}
