import pytest, trio
from peers import free_port
from sipx import AsyncClient, Auth

pytestmark = pytest.mark.integration

async def test_explore(kamailio, baresip):
    b = await trio.to_thread.run_sync(baresip, "3333")
    trace = []
    port = free_port()
    async with AsyncClient("127.0.0.1", port, auth=Auth.Digest(username="1111", password="1111xxx"), trace=lambda *a: trace.append(a)) as client:
        aor = f"sip:1111@127.0.0.1:{kamailio.port}"
        r = await client.register(aor)
        print("REG", r.status_code)
        with trio.fail_after(10):
            call = await client.call(f"sip:3333@127.0.0.1:{kamailio.port}")
        print("CALL", call.state, call.final_response.status_code, call.remote_sdp.get_codecs_summary() if call.remote_sdp else None)
        await trio.sleep(1)
        r = await call.bye()
        print("BYE", r.status_code)
        await trio.sleep(0.5)
        await client.unregister(aor)
    for d, data, addr, t in trace:
        print(d, addr, data.decode().splitlines()[0])
    print(b.log_text())
