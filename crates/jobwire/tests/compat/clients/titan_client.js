// titan's documented JavaScript client, as written; only the host and port
// ({{ADDR}}) and the job id are filled in by the test. The page's own UI functions
// are stubs that log, and the page "closes" once the job has ended.
function updateProgressBar(p) { console.log(`BAR ${p}`); }
function updateStatusText(t) { console.log(`TEXT ${t}`); }

// Connect to WebSocket
const jobId = "{{JOB}}";
const ws = new WebSocket(`ws://{{ADDR}}/ws/jobs/${jobId}`);

ws.onopen = () => {
    console.log("Connected to job progress stream");
};

ws.onmessage = (event) => {
    const data = JSON.parse(event.data);

    if (data.type === 'connected') {
        console.log(`Connected to job ${data.job_id}`);
    }
    else if (data.status === 'processing') {
        console.log(`Progress: ${data.progress * 100}%`);
        console.log(`Stage: ${data.stage}`);
        console.log(`Message: ${data.message}`);

        // Update UI
        updateProgressBar(data.progress);
        updateStatusText(data.message);
    }
    else if (data.status === 'completed') {
        console.log("Job completed!", data.result);
        // Handle completion
    }
    else if (data.status === 'failed') {
        console.error("Job failed:", data.error);
        // Handle error
    }
};

ws.onerror = (error) => {
    console.error("WebSocket error:", error);
};

ws.onclose = () => {
    console.log("Disconnected from job progress stream");
};
