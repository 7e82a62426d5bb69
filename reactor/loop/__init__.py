"""The loop layer: selectors event loop, timers, wake-up socketpair, thread-pool hand-off."""

from reactor.loop.eventloop import EventLoop
from reactor.loop.offload import PoolClosed, ThreadPool
from reactor.loop.timers import TimerHandle

__all__ = ["EventLoop", "PoolClosed", "ThreadPool", "TimerHandle"]
