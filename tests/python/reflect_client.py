"""A Python gRPC client that knows nothing of Duplex but its address.

It discovers the services through server reflection (v1alpha, as grpcio-reflection
speaks it), builds every message class from the descriptors the server sends, and
calls the API by name: the way a release script or a notebook would, without the
.proto files. Used by tests/api_python.rs:

    reflect_client.py ADDR pause|resume FLOW REQUEST_ID

It prints one JSON object on stdout: the services listed, the flows before and after
the change, the change's answer, and the events a watch from sequence 1 received up to
and including the change's last event.
"""

import json
import sys

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

TOPOLOGY = "duplex.v1.TopologyService"
EVENTS = "duplex.v1.EventService"


def main(addr, action, flow, request_id):
    channel = grpc.insecure_channel(addr)
    db = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(db.get_services())
    pool = DescriptorPool(db)

    def method(service, name):
        m = pool.FindServiceByName(service).methods_by_name[name]
        req = message_factory.GetMessageClass(m.input_type)
        resp = message_factory.GetMessageClass(m.output_type)
        path = f"/{service}/{name}"
        kind = channel.unary_stream if m.server_streaming else channel.unary_unary
        call = kind(path, request_serializer=req.SerializeToString,
                    response_deserializer=resp.FromString)
        return lambda fields: call(json_format.ParseDict(fields, req()), timeout=30)

    def as_dict(msg):
        return json_format.MessageToDict(msg, preserving_proto_field_name=True)

    def flows():
        topology = as_dict(method(TOPOLOGY, "GetTopology")({}))
        return {f["name"]: {"state": f.get("state"), "paused": f.get("paused", False)}
                for link in topology.get("links", []) for f in link.get("flows", [])}

    before = flows()
    change = "PauseFlow" if action == "pause" else "ResumeFlow"
    answer = as_dict(method(TOPOLOGY, change)({"flow": flow, "request_id": request_id}))
    after = flows()
    # Sequence numbers are uint64: JSON mapping gives them as strings.
    last = max(int(s) for s in answer["events"])
    watched = []
    for event in method(EVENTS, "WatchEvents")({"from_sequence": "1"}):
        e = as_dict(event)
        watched.append({"sequence": int(e["sequence"]), "type": e["type"],
                        "request_id": e.get("request_id", "")})
        if int(e["sequence"]) >= last:
            break
    json.dump({"services": services, "before": before, "answer": answer,
               "after": after, "watched": watched}, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:5])
