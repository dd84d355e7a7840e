"""The naive replicator the e2e bench compares Duplex with: a consume -> produce loop
with confluent-kafka, as a user might write it, with the producer settings Duplex's
guarantees need (idempotence, acks=all) and Duplex's linger. It copies key, value,
headers and timestamp to the same partition, and keeps none of Duplex's guarantees
(no checkpoint, no provenance, no loop prevention).

Usage: replicate.py SOURCE TARGET TOPIC TARGET_TOPIC PARTITIONS N
Prints: "<records> <seconds>", timed from the assignment to the last delivery.
"""
import sys, time
from confluent_kafka import Consumer, Producer, TopicPartition

src, dst, topic, out_topic, partitions, n = sys.argv[1:7]
partitions, n = int(partitions), int(n)
consumer = Consumer({"bootstrap.servers": src, "group.id": "naive", "enable.auto.commit": False})
producer = Producer({"bootstrap.servers": dst, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
producer.list_topics(out_topic, timeout=10)
start = time.monotonic()
consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
done = 0
while done < n:
    for m in consumer.consume(1000, timeout=0.1):
        if m.error():
            raise SystemExit(f"consume: {m.error()}")
        while True:
            try:
                producer.produce(out_topic, m.value(), m.key(), partition=m.partition(),
                                 headers=m.headers(), timestamp=m.timestamp()[1])
                break
            except BufferError:
                producer.poll(0.001)
        done += 1
    producer.poll(0)
if producer.flush(60) != 0:
    raise SystemExit("flush: records left undelivered")
print(done, time.monotonic() - start)
