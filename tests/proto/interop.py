#!/usr/bin/python3
"""Interop check: Python grpcio (a different gRPC stack from the C client)
calls the C transport with raw protobuf bytes. Run by test_proto_interop with
the server's target and token; exit 0 = all good, 77 = grpcio missing (skip).
"""
import sys

try:
    import grpc
except ImportError:
    print("python grpcio not installed: skipping", file=sys.stderr)
    sys.exit(77)


def string_field(num, s):
    b = s.encode()
    assert len(b) < 128
    return bytes([num << 3 | 2, len(b)]) + b


def main():
    target, token = sys.argv[1], sys.argv[2]
    auth = [("authorization", "Bearer " + token)]
    failures = 0
    with grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", 16 << 20)]) as ch:
        def call(path, payload, md, want):
            nonlocal failures
            fn = ch.unary_unary(path)
            try:
                rep = fn(payload, metadata=md, timeout=5)
                got, detail = grpc.StatusCode.OK, ""
            except grpc.RpcError as e:
                rep, got, detail = None, e.code(), e.details()
            ok = got == want
            failures += not ok
            print("%-4s %-45s -> %s %r" % ("ok" if ok else "FAIL", path, got.name, detail))
            return rep

        poll = "/cerebelum.v1.WorkerService/PollTask"
        req = string_field(1, "py") + string_field(2, "gpu") + bytes([3 << 3, 5])
        rep = call(poll, req, auth, grpc.StatusCode.OK)
        if rep is None or b"task-for-py" not in rep or b"gpu" not in rep:
            print("FAIL reply bytes %r" % (rep,))
            failures += 1
        call(poll, req, None, grpc.StatusCode.UNAUTHENTICATED)
        call(poll, req, [("authorization", "Bearer wrong")], grpc.StatusCode.UNAUTHENTICATED)
        call(poll, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", auth,
             grpc.StatusCode.INVALID_ARGUMENT)
        call(poll, b"\x0a\x7f" + b"short", auth,  # a string that claims 127 bytes
             grpc.StatusCode.INVALID_ARGUMENT)
        n = 5 << 20
        varint = bytearray()
        while True:
            b = n & 0x7f
            n >>= 7
            varint.append(b | (0x80 if n else 0))
            if not n:
                break
        big = bytes([1 << 3 | 2]) + bytes(varint) + b"w" * (5 << 20)
        call(poll, big, auth, grpc.StatusCode.RESOURCE_EXHAUSTED)
        call("/cerebelum.v1.WorkerService/Nope", b"", auth, grpc.StatusCode.UNIMPLEMENTED)
        call("/grpc.health.v1.Health/Check", b"", auth, grpc.StatusCode.UNIMPLEMENTED)
        rep = call("/cerebelum.v1.WorkflowService/Cancel",
                   string_field(1, "e-1") + string_field(2, "stop"), auth, grpc.StatusCode.OK)
        # CancelResponse{seq = 304}: field 1 varint 304 = 0x08 0xb0 0x02
        if rep != b"\x08\xb0\x02":
            print("FAIL Cancel reply %r" % (rep,))
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
