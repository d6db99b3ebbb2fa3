"""A STOMP client over TLS on Python's own ssl module (OpenSSL), for tests/tls.rs:

  tls_client.py HOST PORT CA_FILE [CERT_FILE KEY_FILE]

It verifies the broker's certificate against CA_FILE and HOST (optionally presenting a
client certificate), sends one receipted message to /queue/tls, consumes it and prints
`got BODY`. Any TLS or STOMP failure prints `failed: WHY` and exits with status 3.
"""

import socket
import ssl
import sys


def frames(sock):
    """Yields whole frames (up to their NUL) from the socket."""
    buffer = b""
    while True:
        while b"\0" in buffer:
            frame, buffer = buffer.split(b"\0", 1)
            yield frame.lstrip(b"\r\n").decode()
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        buffer += chunk


def main():
    host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    context = ssl.create_default_context(cafile=ca)
    if len(sys.argv) > 5:
        context.load_cert_chain(sys.argv[4], sys.argv[5])
    sock = context.wrap_socket(socket.create_connection((host, port), timeout=10),
                               server_hostname=host)
    incoming = frames(sock)
    sock.sendall(b"CONNECT\naccept-version:1.2\nhost:x\nlogin:admin\npasscode:admin\n\n\0")
    connected = next(incoming)
    if not connected.startswith("CONNECTED"):
        raise ConnectionError(connected)
    sock.sendall(b"SEND\ndestination:/queue/tls\npersistent:true\nreceipt:sent\n\nover tls\0")
    sock.sendall(b"SUBSCRIBE\ndestination:/queue/tls\nid:1\nack:auto\n\n\0")
    for frame in incoming:
        if frame.startswith("MESSAGE"):
            print("got " + frame.split("\n\n", 1)[1], flush=True)
            return
        if frame.startswith("ERROR"):
            raise ConnectionError(frame)


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # what a user would see
        print(f"failed: {error}", flush=True)
        sys.exit(3)
