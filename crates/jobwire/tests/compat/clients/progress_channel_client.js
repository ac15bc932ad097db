// progress-channel's documented JavaScript client, as written; only the host and
// port ({{ADDR}}) and the job id are filled in by the test. Run with
// `node --experimental-websocket` (a WebSocket global, as in a browser).
// Connect to job progress WebSocket
const jobId = '{{JOB}}';
const ws = new WebSocket(`ws://{{ADDR}}/progress/ws/${jobId}`);

ws.onopen = function(event) {
    console.log('Connected to job progress');
    
    // Send ping to test connection
    ws.send(JSON.stringify({ type: 'ping' }));
};

ws.onmessage = function(event) {
    const data = JSON.parse(event.data);
    
    if (data.type === 'progress' || data.job_id) {
        console.log(`Status: ${data.status}`);
        if (data.progress !== undefined) {
            console.log(`Progress: ${data.progress}%`);
        }
        if (data.message) {
            console.log(`Message: ${data.message}`);
        }
    } else if (data.type === 'pong') {
        console.log('Pong received');
    } else if (data.type === 'error') {
        console.error('Error:', data.error);
    }
};

ws.onerror = function(error) {
    console.error('WebSocket error:', error);
};

ws.onclose = function(event) {
    console.log('WebSocket connection closed');
};
