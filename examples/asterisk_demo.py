"""Three users on one PBX: they register, send each other messages, and call each other,
each call answered by the callee's own client (the guide's "Demo completo com 3 usuários").

Each user is an :class:`sipx.AsyncClient` with its own task that answers its incoming calls;
the steps run a task per user concurrently:

1. every user registers (401 challenge answered);
2. OPTIONS to the server;
3. every user sends a MESSAGE to the next one (1111 -> 2222 -> 3333 -> 1111);
4. every user calls the next one at the same time; the callee rings, answers with an SDP
   answer, and the caller hangs up after ``--duration`` seconds;
5. every user unregisters.

Against ``sipx serve`` (default), the guide's Asterisk (``--server <asterisk>:5060``) or any
PBX where the users exist (``--users 1111:1111xxx,2222:2222xxx,3333:3333xxx``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack

import trio
from _common import check, make_parser, parse_args, run, sip_uri

import sipx
from sipx import AsyncClient, Auth, Call, IncomingRequest

DEFAULT_USERS = "1111:1111xxx,2222:2222xxx,3333:3333xxx"


class Phone:
    """One user: a client, the messages it received and the calls it answered."""

    def __init__(self, user: str, password: str, args: argparse.Namespace) -> None:
        self.user = user
        self.aor = sip_uri(args, user)
        self.client = AsyncClient(
            local_host=args.local_host,
            local_port=0,  # any free port
            transport=args.transport,
            auth=Auth.Digest(username=user, password=password, realm=args.realm),
            timeout=10,  # no step may hang
        )
        self.inbox: list[str] = []
        self.answered: list[Call] = []
        self.unregistered = False
        # Incoming MESSAGEs: returning without responding sends 200 OK
        self.client.on_request("MESSAGE", self.on_message)

    def on_message(self, incoming: IncomingRequest) -> None:
        sender = incoming.request.from_.uri.user
        print(f"   [{self.user}] message from {sender}: {incoming.text!r}")
        self.inbox.append(incoming.text)

    async def answer_calls(self, ring_time: float) -> None:
        """This user's task: ring and answer every incoming call."""
        async for call in self.client.calls():
            print(f"   [{self.user}] incoming call from {call.remote_uri}")
            call.ring()  # 180 Ringing
            await trio.sleep(ring_time)
            if not call.ended:
                call.answer()  # 200 OK with an SDP answer to the caller's offer
                self.answered.append(call)

    async def register(self) -> None:
        response = await self.client.register(aor=self.aor)
        steps = [r.status_code for r in response.history] + [response.status_code]
        print(f"   [{self.user}] REGISTER: {' -> '.join(map(str, steps))}")
        check(response.status_code == 200, f"{self.user} registered")

    async def send_message(self, to: Phone) -> None:
        text = f"Hello {to.user}, this is {self.user}!"
        response = await self.client.message(to_uri=to.aor, text=text)
        status = response.status_code  # 200, or 202 from a store-and-forward PBX (Asterisk)
        check(200 <= status < 300, f"{self.user} -> {to.user} MESSAGE accepted ({status})")

    async def place_call(self, to: Phone, duration: float) -> None:
        call = await self.client.call(to.aor)
        assert call.final_response is not None
        status = call.final_response.status_code
        check(call.established, f"{self.user} -> {to.user} call answered ({status})")
        if call.answer_sdp is not None:
            codecs = ", ".join(call.answer_sdp.get_codecs_summary())
            print(f"   [{self.user}] talking to {to.user} ({codecs})")
        await trio.sleep(duration)
        bye = await call.bye()
        check(bye.status_code == 200, f"{self.user} hung up ({bye.status_code})")

    async def unregister(self) -> None:
        """Remove the binding; never raises (it also runs after a failed step)."""
        try:
            response = await self.client.unregister(self.aor)
        except sipx.SIPError as exc:
            print(f"   [{self.user}] unregister failed: {exc}")
            return
        print(f"   [{self.user}] unregistered: {response.status_code}")
        self.unregistered = response.status_code == 200


async def each(phones: Sequence[Phone], step: Callable[[Phone, Phone], Awaitable[None]]) -> None:
    """Run ``step(phone, next_phone)`` for every phone at once, a task each."""
    async with trio.open_nursery() as nursery:
        for i, phone in enumerate(phones):
            nursery.start_soon(step, phone, phones[(i + 1) % len(phones)])


async def steps(phones: list[Phone], args: argparse.Namespace) -> None:
    print("1. Registering...")
    await each(phones, lambda phone, _: phone.register())

    print("2. Checking the server...")
    response = await phones[0].client.options(uri=sip_uri(args), host=args.host, port=args.port)
    check(response.status_code == 200, f"OPTIONS answered {response.status_code}")

    print("3. Sending messages...")
    await each(phones, Phone.send_message)
    with trio.move_on_after(5):
        while not all(phone.inbox for phone in phones):
            await trio.sleep(0.01)
    for phone in phones:
        check(len(phone.inbox) == 1, f"{phone.user} received one message")

    print("4. Calling...")
    await each(phones, lambda phone, to: phone.place_call(to, args.duration))
    for phone in phones:
        check(len(phone.answered) == 1, f"{phone.user} answered one call")
        with trio.move_on_after(5):
            await phone.answered[0].wait_ended()
        check(phone.answered[0].ended_by == "remote", f"{phone.user} saw the hang-up")


async def main(args: argparse.Namespace) -> None:
    phones = [Phone(user, password, args) for user, password in args.users]

    async with AsyncExitStack() as stack:
        for phone in phones:
            await stack.enter_async_context(phone.client)
        try:
            async with trio.open_nursery() as nursery:
                # The task per user that answers its calls
                for phone in phones:
                    nursery.start_soon(phone.answer_calls, args.ring_time)
                await steps(phones, args)
                nursery.cancel_scope.cancel()  # stop answering
        finally:
            # Also after a failed step: no binding is left behind
            print("5. Unregistering...")
            with trio.move_on_after(5):
                await each(phones, lambda phone, _: phone.unregister())

    for phone in phones:
        check(phone.unregistered, f"{phone.user} unregistered")
    print("\nAll steps passed!")


if __name__ == "__main__":
    parser = make_parser(__doc__, user=False)
    parser.add_argument(
        "--users",
        default=os.environ.get("SIPX_USERS") or DEFAULT_USERS,
        metavar="U:P,U:P,...",
        help=f"users and passwords (env SIPX_USERS, default {DEFAULT_USERS})",
    )
    parser.add_argument(
        "--realm",
        default=os.environ.get("SIPX_REALM") or None,
        help="digest realm (env SIPX_REALM; default: the one the server sends)",
    )
    parser.add_argument("--ring-time", type=float, default=0.5, help="s before answering")
    parser.add_argument("--duration", type=float, default=2, help="call length, s (default 2)")
    args = parse_args(parser)
    args.users = [entry.strip().split(":", 1) for entry in args.users.split(",") if entry]
    if len(args.users) < 2 or any(len(entry) != 2 for entry in args.users):
        parser.error("--users needs at least two USER:PASSWORD, comma-separated")
    run(main, args)
