# titan's documented Python client, as written; only the host and port ({{ADDR}})
# and the job id (argv) are filled in by the test.
import asyncio
import json
import sys
import websockets

async def monitor_job(job_id: str):
    """Monitor job progress via WebSocket"""
    uri = f"ws://{{ADDR}}/ws/jobs/{job_id}"

    async with websockets.connect(uri) as websocket:
        print(f"Connected to job {job_id}")

        async for message in websocket:
            data = json.loads(message)

            if data.get('status') == 'processing':
                progress = data['progress'] * 100
                print(f"{data['stage']}: {progress:.1f}% - {data['message']}")

            elif data.get('status') == 'completed':
                print(f"✅ Job completed: {data['result']}")
                break

            elif data.get('status') == 'failed':
                print(f"❌ Job failed: {data['error']}")
                break

# Run
asyncio.run(monitor_job(sys.argv[1]))
