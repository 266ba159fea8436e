# Generated from proto/ by scripts/generate_clients.py: do not edit. Regenerate with ./dev generate.
import betterproto2

default_message_pool = betterproto2.MessagePool()
