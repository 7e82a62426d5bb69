"""The loop layer: selectors event loop, timers, wake-up socketpair, thread-pool hand-off."""

from reactor.loop.eventloop import EventLoop
from reactor.loop.offload import ThreadPool
from reactor.loop.timers import TimerHandle

__all__ = ["EventLoop", "ThreadPool", "TimerHandle"]
