"""The fault suite's workload (confluent-kafka / librdkafka): producers writing unique
numbered values, a consumer reading while the faults run, and a fresh final read.

Owns: producing `w<writer>-<seq>` values round-robin over the partitions (seq % partitions),
each writer an idempotent acks=all producer (or acks=1 without idempotence for the loss
report) at a steady rate, recording every acknowledgement (partition, offset, value, wall
time), every failed delivery and librdkafka's fatal errors; a concurrent assign-mode
consumer recording (partition, offset, value, time) of everything it reads; the final read
of every partition from the earliest offset to its high watermark; the fault marks; and
the history the checker (fault_checker) judges.
Must never: block without a deadline (every wait is bounded; `stop()` gives up after its
timeout and says what was still in flight), or let a thread outlive `stop()`.
"""

import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

# Outstanding (unacknowledged) writes per producer before it waits: keeps the queue, and so
# the burst after a recovery, bounded.
MAX_IN_FLIGHT = 500
FINAL_READ_TIMEOUT_S = 120.0


class Writer(threading.Thread):
    """One producer thread. `partition` fixed: every write goes there (else round-robin);
    `limit`: stop writing after that many (and only wait for deliveries); `conf`: overrides."""

    def __init__(self, wl, index: int, partition=None, limit=None, conf=None):
        super().__init__(name=f"writer-{index}", daemon=True)
        self.wl = wl
        self.index = index
        self.partition = partition
        self.limit = limit
        base = {"bootstrap.servers": wl.bootstrap, "linger.ms": 5, "message.timeout.ms": wl.message_timeout_ms,
                "error_cb": self._on_error}
        if wl.acks == "all":
            base.update({"enable.idempotence": True, "acks": "all"})
        else:
            base.update({"enable.idempotence": False, "acks": str(wl.acks)})
        base.update(wl.producer_conf)
        base.update(conf or {})
        self.producer = Producer(base)
        self.outstanding = 0
        self.sent = 0

    def _on_error(self, err):
        if err.fatal():
            self.wl.fatal.append((self.index, str(err), time.time()))

    def _delivered(self, err, msg):
        self.outstanding -= 1
        value = msg.value().decode()
        if err is None:
            self.wl.acks_list.append((msg.partition(), msg.offset(), value, time.time()))
        else:
            self.wl.failed.append((value, str(err), time.time()))

    def run(self):
        interval = 1.0 / self.wl.rate_per_writer
        next_t = time.monotonic()
        seq = 0
        while not self.wl.stopping.is_set() and not self.wl.fatal:
            if self.outstanding >= MAX_IN_FLIGHT or (self.limit is not None and seq >= self.limit):
                self.producer.poll(0.05)
                continue
            value = f"w{self.index}-{seq}"
            try:
                partition = self.partition if self.partition is not None else seq % self.wl.partitions
                self.producer.produce(self.wl.topic, value.encode(), partition=partition, on_delivery=self._delivered)
            except BufferError:
                self.producer.poll(0.05)
                continue
            self.wl.attempted.append(value)
            self.wl.sent_at[value] = time.time()
            self.outstanding += 1
            seq += 1
            self.sent = seq
            next_t += interval
            delay = next_t - time.monotonic()
            self.producer.poll(max(0.0, delay))
            if delay < -1.0:  # fell behind (GIL, slow box): do not burst to catch up
                next_t = time.monotonic()

    def finish(self, timeout_s: float) -> int:
        """Flush (bounded); returns the number still outstanding."""
        left = self.producer.flush(timeout_s)
        return left


class ConcurrentReader(threading.Thread):
    def __init__(self, wl):
        super().__init__(name="concurrent-reader", daemon=True)
        self.wl = wl
        self.consumer = Consumer({"bootstrap.servers": wl.bootstrap, "group.id": f"faults-{wl.topic}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                  "enable.partition.eof": False})
        self.consumer.assign([TopicPartition(wl.topic, p, OFFSET_BEGINNING) for p in range(wl.partitions)])
        self.errors = []

    def run(self):
        try:
            while not self.wl.reader_stop.is_set():
                for msg in self.consumer.consume(500, 0.2):
                    if msg.error():
                        if msg.error().fatal():
                            self.errors.append(str(msg.error()))
                        continue
                    self.wl.concurrent.append((msg.partition(), msg.offset(), msg.value().decode(), time.time()))
        finally:
            self.consumer.close()


class Workload:
    """`Workload(bootstrap, topic, partitions)`: `start()`, `mark(name, partitions)` at
    each fault, `stop()`, `final_read()`, then `history()` for the checker."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, writers: int = 2, rate: float = 300.0,
                 acks="all", message_timeout_ms: int = 120000, producer_conf=None, read_concurrently=True):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.acks = acks
        self.rate_per_writer = rate / writers
        self.message_timeout_ms = message_timeout_ms
        self.producer_conf = dict(producer_conf or {})
        self.acks_list, self.failed, self.fatal, self.attempted = [], [], [], []
        self.sent_at = {}
        self.concurrent, self.final, self.faults = [], [], []
        self.final_ends = {}
        self.stopping = threading.Event()
        self.reader_stop = threading.Event()
        self.writers = [Writer(self, i) for i in range(writers)]
        self.reader = ConcurrentReader(self) if read_concurrently else None
        self.started_t = None
        self.end_t = None

    def start(self):
        self.started_t = time.time()
        for w in self.writers:
            w.start()
        if self.reader:
            self.reader.start()
        return self

    def add_writer(self, partition=None, limit=None, conf=None) -> Writer:
        """Start one more writer now (values `w<next index>-<seq>`, recorded like the others)."""
        w = Writer(self, len(self.writers), partition, limit, conf)
        self.writers.append(w)
        w.start()
        return w

    def acked_since(self, t: float, partition=None) -> int:
        return sum(1 for p, _o, _v, ta in list(self.acks_list) if ta >= t and (partition is None or p == partition))

    def wait_acks(self, n: int, partition=None, since=None, sent_after=None, timeout_s: float = 60.0) -> float:
        """Wait until `n` acks (on `partition`) arrived after `since` (of writes sent after
        `sent_after`); returns when the first of them arrived. AssertionError on timeout."""
        since = since if since is not None else 0.0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = sorted(ta for p, _o, v, ta in list(self.acks_list)
                         if ta >= since and (partition is None or p == partition)
                         and (sent_after is None or self.sent_at.get(v, 0.0) >= sent_after))
            if len(got) >= n:
                return got[0]
            assert not self.fatal, f"producer fatal error: {self.fatal}"
            time.sleep(0.05)
        raise AssertionError(f"fewer than {n} acknowledgements on partition {partition} within {timeout_s} s "
                             f"(failed deliveries so far: {len(self.failed)}, last {self.failed[-3:]})")

    def mark(self, name: str, partitions=None, t=None, heal: bool = False) -> float:
        """Record a fault (or, with `heal`, the end of the last one) now or at `t`."""
        t = t if t is not None else time.time()
        self.faults.append({"name": name, "t": t, "partitions": list(partitions or []), "heal": heal})
        print(f"fault {name} at +{t - self.started_t:.2f} s on partitions {list(partitions or [])}")
        return t

    def stop(self, flush_timeout_s: float = 90.0):
        """Stop producing, wait (bounded) for outstanding deliveries, stop the reader."""
        self.stopping.set()
        for w in self.writers:
            w.join(10)
        left = sum(w.finish(flush_timeout_s / len(self.writers)) for w in self.writers)
        for w in self.writers:
            w.producer = None  # destroyed now, not when the brokers are already gone
        self.end_t = time.time()
        self.reader_stop.set()
        if self.reader:
            self.reader.join(30)
        alive = [t.name for t in self.writers + ([self.reader] if self.reader else []) if t.is_alive()]
        assert not alive, f"workload threads did not stop: {alive}"
        print(f"workload stopped: {sum(w.sent for w in self.writers)} sent, {len(self.acks_list)} acknowledged, "
              f"{len(self.failed)} failed, {left} still undelivered after {flush_timeout_s:.0f} s, "
              f"{len(self.concurrent)} read concurrently, fatal {self.fatal}")
        return left

    def final_read(self, timeout_s: float = FINAL_READ_TIMEOUT_S):
        """A fresh consumer reads every partition from the earliest offset up to the high
        watermark it finds now."""
        self.final, self.final_ends = final_read(self.bootstrap, self.topic, self.partitions, timeout_s)
        return self.final

    def history(self) -> dict:
        return {"acks": list(self.acks_list), "attempted": list(self.attempted), "concurrent": list(self.concurrent),
                "final": list(self.final), "faults": list(self.faults), "end_t": self.end_t}


def final_read(bootstrap: str, topic: str, partitions: int, timeout_s: float = FINAL_READ_TIMEOUT_S):
    """([(partition, offset, value)] of everything below each partition's high watermark,
    {partition: high watermark})."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"faults-final-{topic}",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        deadline = time.monotonic() + timeout_s
        ends = {}
        for p in range(partitions):
            while True:
                try:
                    low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                    ends[p] = high
                    break
                except Exception as exc:  # noqa: BLE001 - retried until the deadline
                    assert time.monotonic() < deadline, f"watermarks of {topic}-{p}: {exc}"
                    time.sleep(0.5)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        out, pos = [], {p: -1 for p in range(partitions)}
        while any(pos[p] + 1 < ends[p] for p in range(partitions)):
            assert time.monotonic() < deadline, (
                f"final read of {topic} incomplete after {timeout_s} s: at {pos}, high watermarks {ends}")
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        print(f"final read: {msg.error()}")
                    continue
                p, off = msg.partition(), msg.offset()
                if off < ends[p]:
                    out.append((p, off, msg.value().decode()))
                pos[p] = max(pos[p], off)
        print(f"final read: {len(out)} records, high watermarks {ends}")
        return out, ends
    finally:
        consumer.close()
