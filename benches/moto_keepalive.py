"""moto's backends behind waitress, for the bench's `MOTO_FRONT=waitress`.

`moto_server` serves moto with werkzeug's development server, which answers every request
with `Connection: close` and starts a thread per connection. DynamoDB keeps connections
alive; so does this: waitress (HTTP/1.1 keep-alive, a pool of threads) in front of the same
moto application. Usage: python3 moto_keepalive.py PORT (prints the address it serves).
"""

import os
import sys

import waitress
from moto.server import DomainDispatcherApplication, create_backend_app

app = DomainDispatcherApplication(create_backend_app)
port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
server = waitress.create_server(app, host="127.0.0.1", port=port, threads=8, channel_timeout=600)
os.environ["MOTO_PORT"] = str(server.effective_port)
print(f"Running on http://127.0.0.1:{server.effective_port}", file=sys.stderr, flush=True)
server.run()
