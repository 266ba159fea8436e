# Generated from proto/ by scripts/generate_clients.py: do not edit. Regenerate with ./dev generate.
