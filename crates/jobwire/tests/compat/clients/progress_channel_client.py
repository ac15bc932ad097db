# progress-channel's documented Python client, as written; only the host and port
# ({{ADDR}}) and the job id (argv) are filled in by the test.
import asyncio
import json
import sys
import websockets

async def monitor_job(job_id: str):
    uri = f"ws://{{ADDR}}/progress/ws/{job_id}"
    
    async with websockets.connect(uri) as websocket:
        async for message in websocket:
            data = json.loads(message)
            
            if data.get('job_id'):
                print(f"Status: {data['status']}")
                if data.get('progress') is not None:
                    print(f"Progress: {data['progress']:.1f}%")
                if data.get('message'):
                    print(f"Message: {data['message']}")
                print("-" * 30)

# Usage
asyncio.run(monitor_job(sys.argv[1]))
