"""calarb's FIX 4.4 engine: session layer, persistent store, order state machine, asyncio TCP.

Public API (stable; everything else is internal)::

    import asyncio
    from protocols import fix                          # Message, message(), FixError
    from host.fix import (Acceptor, Initiator, SessionConfig, Application, Session,
                          new_order_single, cancel_request, replace_request,
                          execution_report, cancel_reject, OrderTracker)

    # --- acceptor (the exchange side): loopback, only the configured CompIDs log on
    class Exchange(Application):
        def on_logon(self, session): ...
        def on_logout(self, session): ...
        def on_message(self, session, msg):            # msg: protocols.fix.Message
            if msg.msg_type == "D":                    # NewOrderSingle
                session.send(execution_report(order_id="1", exec_id="e1", cl_ord_id=msg.cl_ord_id,
                    symbol=msg.symbol, side=msg.side, exec_type="0", ord_status="0",
                    order_qty=msg.order_qty, cum_qty=0, leaves_qty=msg.order_qty, avg_px_e4=0,
                    price_e4=msg.price_e4))

    acceptor = Acceptor([SessionConfig("EXCH", "CALARB", heartbeat_s=30, store="run/fix/exch.store")],
                        Exchange(), host="127.0.0.1", port=0)
    port = await acceptor.start()
    acceptor.session("CALARB").send(msg)               # push any application message to a client
    await acceptor.stop()

    # --- initiator (calarb's side)
    init = Initiator(SessionConfig("CALARB", "EXCH", heartbeat_s=30, store="run/fix/calarb.store"),
                     "127.0.0.1", port, app=MyApp())
    await init.start(); await init.wait_logged_on()
    init.send(new_order_single("c1", "AAPL", side="1", qty=100, price_e4=1_502_500))  # 150.25
    await init.stop()                                  # Logout handshake, then close

Messages: ``protocols.fix.Message(msg_type, [(tag, value), ...])`` or
``fix.message("NewOrderSingle", ClOrdID="c1", ...)``; read with ``msg[tag]`` (str),
``msg.get_int/get_decimal/get_e4/get_time(tag)`` or named properties
(``cl_ord_id, orig_cl_ord_id, order_id, exec_id, symbol, side, ord_type,
order_qty, price_e4, exec_type, ord_status, cum_qty, leaves_qty, last_qty,
last_px_e4, avg_px_e4, text``). Prices are integers in 1/10000 (``*_e4``).
Callbacks run on the event loop thread; ``Session.send`` may be called from them.
"""

from .config import ConfigError, SessionConfig
from .orders import (OrderState, OrderStateError, OrderTracker, cancel_reject, cancel_request, execution_report,
                     new_order_single, replace_request)
from .session import Application, Session, SessionError, SoftwareSequencer
from .store import FileStore, MemoryStore, StoreError
from .transport import Acceptor, Initiator

__all__ = [
    "Acceptor", "Initiator", "Session", "SessionConfig", "Application", "ConfigError", "SessionError",
    "FileStore", "MemoryStore", "StoreError", "SoftwareSequencer",
    "new_order_single", "cancel_request", "replace_request", "execution_report", "cancel_reject",
    "OrderTracker", "OrderState", "OrderStateError",
]
