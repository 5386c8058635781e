"""The pyserial end of the serial MCU link: open a port by URL, run its reader thread, close it.

Responsible for the blocking side of the link only. `serial.serial_for_url` runs in a
worker thread; each open port has one reader thread doing blocking reads with a short
timeout, which hands every chunk of bytes (or the error that ended it) to the event loop
through the `post` callback the link gives it (`loop.call_soon_threadsafe`). A thread
rather than `loop.add_reader` because it works for every pyserial URL (`loop://`,
`socket://`, `rfc2217://`) and every event loop.

It must not decode frames or keep any session state (drivers/serial_mcu_link.py does
both, on the loop thread only), and must not import the agent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import serial

from drivers.interfaces import DriverError

READ_TIMEOUT_S = 0.05


@dataclass
class McuPort:
    """An open serial port and the thread that reads it."""

    handle: Any  # serial.Serial (or any pyserial URL handler)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start_reader(
        self,
        name: str,
        post: Callable[..., None],
        on_bytes: Callable[[McuPort, bytes], None],
        on_error: Callable[[McuPort, BaseException], None],
    ) -> None:
        """Start the reader thread; it posts on_bytes(port, data) and on_error(port, exc)."""
        self.thread = threading.Thread(
            target=self._read_loop, args=(post, on_bytes, on_error), name=name
        )
        self.thread.daemon = True
        self.thread.start()

    def _read_loop(
        self,
        post: Callable[..., None],
        on_bytes: Callable[[McuPort, bytes], None],
        on_error: Callable[[McuPort, BaseException], None],
    ) -> None:
        """Reader thread: blocking reads, bytes handed to the loop thread."""
        while not self.stop.is_set():
            try:
                data = self.handle.read(max(1, self.handle.in_waiting))
            except Exception as exc:  # pyserial raises several types when the port goes
                if not self.stop.is_set():
                    post(on_error, self, exc)
                return
            if data:
                post(on_bytes, self, bytes(data))

    async def release(self) -> None:
        """Stop the reader thread and close the port; raises SerialException or OSError."""
        self.stop.set()
        cancel_read = getattr(self.handle, "cancel_read", None)
        if cancel_read is not None:
            cancel_read()
        if self.thread is not None and self.thread is not threading.current_thread():
            await asyncio.to_thread(self.thread.join, 1.0)
        self.handle.close()


async def open_mcu_port(url: str, *, baudrate: int, write_timeout_s: float) -> McuPort:
    """Open `url` with pyserial in a worker thread (reader not started); raises DriverError."""
    try:
        handle = await asyncio.to_thread(
            serial.serial_for_url,
            url,
            baudrate=baudrate,
            timeout=READ_TIMEOUT_S,
            write_timeout=write_timeout_s,
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        raise DriverError(f"cannot open serial port {url}: {exc}") from exc
    return McuPort(handle)
