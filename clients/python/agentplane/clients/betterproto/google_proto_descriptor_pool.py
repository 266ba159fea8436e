# Generated from proto/ by scripts/generate_clients.py: do not edit. Regenerate with ./dev generate.
from google.protobuf import descriptor_pool

default_google_proto_descriptor_pool = descriptor_pool.DescriptorPool()
