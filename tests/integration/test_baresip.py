import pytest, trio
from peers import free_port
from sipx import AsyncClient, Auth

pytestmark = pytest.mark.integration

async def test_explore(kamailio, baresip):
    b = await trio.to_thread.run_sync(baresip, "3333")
    trace = []
    port = free_port()
    async with AsyncClient("127.0.0.1", port, auth=Auth.Digest(username="2222", password="2222xxx"), trace=lambda *a: trace.append(a)) as client:
        aor = f"sip:2222@127.0.0.1:{kamailio.port}"
        r = await client.register(aor)
        print("REG", r.status_code)
        with trio.fail_after(10):
            b.dial(f"sip:2222@127.0.0.1:{kamailio.port}")
            async for call in client.calls():
                break
            print("INCOMING", call, call.remote_sdp.get_codecs_summary())
            call.ring()
            call.answer()
            await call.wait_acked()
            print("ACKED", call.state)
            await trio.sleep(0.5)
            b.hangup()
            print("ENDED", await call.wait_ended())
        await trio.sleep(0.3)
        await client.unregister(aor)
    for d, data, addr, t in trace:
        print(d, addr, data.decode().splitlines()[0])
    print(b.log_text())
