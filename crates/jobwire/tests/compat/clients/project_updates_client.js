// project-updates' documented TypeScript client (ProjectWebSocket), as written but
// for its type annotations (node runs JavaScript), with the host and port ({{ADDR}}),
// project and token filled in by the test. The page's UI functions are stubs that
// log; the test ends the page with ws.disconnect() once it saw the completion.
function updateProgressBar(p) { console.log(`BAR ${p}`); }
function updateStatusMessage(m) { console.log(`STATUS ${m}`); }
function updateGenerationUI(d) { console.log(`GENERATION ${d.current_section} ${d.sections_completed}/${d.sections_total}`); }
function handleOperationComplete(op, result) { console.log(`COMPLETE ${op} ${JSON.stringify(result)}`); ws.disconnect(); }
function showErrorNotification(e) { console.log(`ERROR ${e}`); }

class ProjectWebSocket {
  ws = null;
  projectId;
  token;

  constructor(projectId, token) {
    this.projectId = projectId;
    this.token = token;
  }

  connect(onMessage) {
    const url = `ws://{{ADDR}}/ws/projects/${this.projectId}?token=${this.token}`;
    this.ws = new WebSocket(url);

    this.ws.onopen = () => {
      console.log('WebSocket connected');
      // Send periodic ping to keep alive
      this.timer = setInterval(() => {
        this.ws?.send('ping');
      }, 30000); // Every 30 seconds
    };

    this.ws.onmessage = (event) => {
      const data = JSON.parse(event.data);
      onMessage(data);
    };

    this.ws.onerror = (error) => {
      console.error('WebSocket error:', error);
    };

    this.ws.onclose = (event) => {
      console.log(`WebSocket disconnected ${event.code}`);
      clearInterval(this.timer);
      // Implement reconnection logic
    };
  }

  disconnect() {
    this.ws?.close();
  }
}

// Usage
const projectId = '{{PROJECT}}';
const accessToken = '{{TOKEN}}';
const ws = new ProjectWebSocket(projectId, accessToken);
ws.connect((data) => {
  switch (data.type) {
    case 'rc_analysis_progress':
      updateProgressBar(data.progress);
      updateStatusMessage(data.message);
      break;

    case 'generation_progress':
      updateGenerationUI(data);
      break;

    case 'completion':
      handleOperationComplete(data.operation, data.result);
      break;

    case 'error':
      showErrorNotification(data.error);
      break;
  }
});
