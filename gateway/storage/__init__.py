"""The only code that speaks Redis: the key layout (keys.py), the client (client.py), one
module per aggregate, and the Store that holds them (store.py)."""
