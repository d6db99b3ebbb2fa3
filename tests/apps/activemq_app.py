"""An application written for ActiveMQ's STOMP connector, with stomp.py, as its users
write one: it knows nothing of mirrormq. It connects to a list of brokers (the pair's
two client ports, first the master), and uses the headers of the ActiveMQ features issue:
a durable topic subscription with a selector (client-id, activemq.subscriptionName),
priority, expiry, AMQ_SCHEDULED_DELAY, a temporary reply queue with reply-to, and a queue
browser.

  activemq_app.py setup   HOST:PORT,HOST:PORT   make the durable subscription, leave
  activemq_app.py produce HOST:PORT,HOST:PORT   publish and enqueue, every SEND receipted
  activemq_app.py consume HOST:PORT,HOST:PORT   (after a failover) check what was kept

`consume` prints one JSON object of what it saw; tests/activemq_app.rs asserts on it. Any
ERROR frame or missing message ends it with a non-zero status.
"""

import json
import os
import queue
import sys
import time

import stomp

WAIT = 20.0
DELAY_MS = 1500


class Frames(stomp.ConnectionListener):
    """Every MESSAGE, RECEIPT and ERROR, in arrival order."""

    def __init__(self):
        self.messages = queue.Queue()
        self.receipts = queue.Queue()

    def on_message(self, frame):
        self.messages.put(frame)

    def on_receipt(self, frame):
        self.receipts.put(frame.headers["receipt-id"])

    def on_error(self, frame):
        # On stomp.py's receiver thread: end the whole application at once.
        print(f"ERROR from the broker: {frame.headers.get('message')}: {frame.body}",
              file=sys.stderr, flush=True)
        os._exit(3)


def connect(brokers, client_id=None):
    hosts = [(h, int(p)) for h, p in (b.rsplit(":", 1) for b in brokers.split(","))]
    conn = stomp.Connection12(hosts, reconnect_attempts_max=60, reconnect_sleep_initial=0.1,
                              reconnect_sleep_increase=0.2, reconnect_sleep_max=0.5)
    frames = Frames()
    conn.set_listener("", frames)
    headers = {"client-id": client_id} if client_id else {}
    conn.connect("admin", "admin", wait=True, headers=headers)
    return conn, frames


def receipted(conn, frames, receipt):
    got = frames.receipts.get(timeout=WAIT)
    if got != receipt:
        sys.exit(f"receipt {got} came, {receipt} was expected")


def send(conn, frames, destination, body, **headers):
    receipt = f"r-{time.monotonic_ns()}"
    headers["persistent"] = "true"
    conn.send(destination=destination, body=body, headers=headers, receipt=receipt)
    receipted(conn, frames, receipt)


def subscribe(conn, frames, destination, sub_id, **headers):
    conn.subscribe(destination=destination, id=sub_id, ack="client-individual",
                   headers=headers, receipt=f"sub-{sub_id}")
    receipted(conn, frames, f"sub-{sub_id}")


def take(conn, frames, count, ack=True):
    taken = []
    for _ in range(count):
        frame = frames.messages.get(timeout=WAIT)
        taken.append(frame)
        if ack and "ack" in frame.headers:
            conn.ack(frame.headers["ack"])
    return taken


def durable(conn, frames):
    subscribe(conn, frames, "/topic/prices", "prices", **{
        "activemq.subscriptionName": "prices-eu", "selector": "region = 'eu'"})


def setup(brokers):
    conn, frames = connect(brokers, client_id="pricing-app")
    durable(conn, frames)
    conn.disconnect(receipt="bye")


def produce(brokers):
    conn, frames = connect(brokers)
    for i in range(6):
        region = "eu" if i % 2 == 0 else "us"
        send(conn, frames, "/topic/prices", f"price-{i}-{region}", region=region)
    send(conn, frames, "/queue/orders", "low", priority="1")
    send(conn, frames, "/queue/orders", "normal")
    send(conn, frames, "/queue/orders", "expired", expires=str(int(time.time() * 1000) - 1000))
    send(conn, frames, "/queue/orders", "urgent", priority="9")
    send(conn, frames, "/queue/reminders", "later", AMQ_SCHEDULED_DELAY=str(DELAY_MS))
    print(json.dumps({"delayed_sent_ms": int(time.time() * 1000)}))
    conn.disconnect(receipt="bye")


def consume(brokers, delayed_sent_ms):
    seen = {}
    conn, frames = connect(brokers, client_id="pricing-app")
    durable(conn, frames)
    seen["durable"] = [f.body for f in take(conn, frames, 3)]
    conn.unsubscribe("prices")
    # A browser sees the orders without taking them.
    conn.subscribe(destination="/queue/orders", id="browse", headers={"browser": "true"})
    browsed = []
    while True:
        frame = frames.messages.get(timeout=WAIT)
        if frame.headers.get("browser") == "end":
            break
        browsed.append(frame.body)
    seen["browsed"] = browsed
    subscribe(conn, frames, "/queue/orders", "orders")
    seen["orders"] = [f.body for f in take(conn, frames, 3)]
    subscribe(conn, frames, "/queue/reminders", "reminders")
    later = take(conn, frames, 1)[0]
    seen["delayed"] = later.body
    seen["delayed_after_ms"] = int(time.time() * 1000) - delayed_sent_ms
    # Request and reply over a temporary queue, the replier on its own connection.
    subscribe(conn, frames, "/temp-queue/answers", "answers")
    send(conn, frames, "/queue/questions", "what time is it?", **{"reply-to": "/temp-queue/answers"})
    replier, replier_frames = connect(brokers)
    subscribe(replier, replier_frames, "/queue/questions", "questions")
    question = take(replier, replier_frames, 1)[0]
    send(replier, replier_frames, question.headers["reply-to"], "noon")
    seen["reply"] = take(conn, frames, 1)[0].body
    replier.disconnect(receipt="bye")
    conn.disconnect(receipt="bye")
    print(json.dumps(seen))


if __name__ == "__main__":
    phase, brokers = sys.argv[1], sys.argv[2]
    if phase == "setup":
        setup(brokers)
    elif phase == "produce":
        produce(brokers)
    elif phase == "consume":
        consume(brokers, int(sys.argv[3]))
    else:
        sys.exit(f"unknown phase {phase}")
