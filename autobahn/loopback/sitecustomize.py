"""Loaded at start-up by wstest's Python 2.7 when run-client.sh puts this
folder on PYTHONPATH: the fuzzing server then listens on 127.0.0.1 only
(wstest 0.8.2 always listens on every interface and has no option for it)."""
try:
    import autobahn.twisted.websocket as _ws
except ImportError:
    _ws = None

if _ws is not None:
    _listen = _ws.listenWS

    def _listen_on_loopback(factory, contextFactory=None, backlog=50, interface=''):
        return _listen(factory, contextFactory, backlog, interface or '127.0.0.1')

    _ws.listenWS = _listen_on_loopback
