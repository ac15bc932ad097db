// A small page built like the components our users run today: a useJob card, a6hub's build page
// (useJobWebSocket with its callbacks) and titan's JobProgressMonitor (useJobProgress), plus a
// useJobs list. The browser test loads it in Chromium against the real server.
import { useState } from 'react';
import { createRoot } from 'react-dom/client';
import { Jobwire } from '@jobwire/client';
import { JobwireProvider, useJob, useJobs, useJobWebSocket, useJobProgress } from '../../src/index.js';

const q = new URLSearchParams(location.search);
const jw = new Jobwire({ url: q.get('server')!, heartbeatInterval: 1000, heartbeatGrace: 1000, minReconnectDelay: 100, maxReconnectDelay: 500 });
(window as unknown as { jw: Jobwire }).jw = jw;

function JobCard({ jobId }: { jobId: string }) {
  const { job, status, progress, stage, logs, isConnected, isTerminal, cancel, error } = useJob(jobId);
  return (
    <section id={`card-${jobId}`}>
      <span className="conn">{isConnected ? 'connected' : 'offline'}</span>
      <span className="status">{status ?? 'none'}</span>
      <span className="progress">{progress}</span>
      <span className="stage">{stage ?? ''}</span>
      <span className="terminal">{String(isTerminal)}</span>
      <span className="error">{error?.code ?? ''}</span>
      <span className="steps">{job?.steps.map((s) => `${s.name}:${s.state}`).join(',') ?? ''}</span>
      <ol className="logs">{logs.map((l) => <li key={l.number}>{`${l.number} ${l.line}`}</li>)}</ol>
      <button className="cancel" onClick={() => void cancel('user clicked')}>Cancel</button>
    </section>
  );
}

// a6hub's BuildPage, as in its integration guide (toasts replaced by counters).
function BuildPage({ jobId }: { jobId: string }) {
  const [job, setJob] = useState<{ status: string } | null>({ status: 'running' });
  const [logs, setLogs] = useState('');
  const [progress, setProgress] = useState(0);
  const [currentStep, setCurrentStep] = useState('');
  const [completions, setCompletions] = useState<string[]>([]);
  const [errors, setErrors] = useState<string[]>([]);
  const [stepChanges, setStepChanges] = useState<string[]>([]);
  const { isConnected, connectionError } = useJobWebSocket({
    jobId,
    enabled: !!job,
    onStatusChange: (status) => setJob((prev) => ({ ...prev, status })),
    onProgressUpdate: (progress, step) => {
      setProgress(progress);
      setCurrentStep(step);
    },
    onLogUpdate: (logLine) => setLogs((prev) => prev + logLine),
    onStepChange: (_name, label) => setStepChanges((p) => [...p, label]),
    onComplete: (status, message) => {
      setJob((prev) => ({ ...prev, status }));
      setCompletions((p) => [...p, `${status}:${message}`]);
    },
    onError: (m) => setErrors((p) => [...p, m]),
  });
  return (
    <div id="a6hub">
      {isConnected && <div className="live">● Live</div>}
      {connectionError && <div className="conn-error">Connection error</div>}
      <div className="bar" style={{ width: `${progress}%` }} />
      <div className="step">Step: {currentStep} ({progress}%)</div>
      <div className="job-status">{job?.status}</div>
      <div className="completions">{completions.join('|')}</div>
      <div className="step-changes">{stepChanges.join(',')}</div>
      <div className="errors">{errors.join('|')}</div>
      <pre className="logs">{logs}</pre>
    </div>
  );
}

// titan's JobProgressMonitor, verbatim apart from the import.
function JobProgressMonitor({ jobId }: { jobId: string }) {
  const { progress, isConnected, error } = useJobProgress(jobId);
  if (error) return <div id="titan">Error: {error}</div>;
  if (!isConnected) return <div id="titan">Connecting...</div>;
  if (!progress) return <div id="titan">Waiting for updates...</div>;
  return (
    <div id="titan">
      <h3>{progress.stage}</h3>
      <progress value={progress.progress} max={1} />
      <p>{progress.message}</p>
      <span className="titan-status">{progress.status}</span>
      {progress.status === 'completed' && <pre>{JSON.stringify(progress.result, null, 2)}</pre>}
    </div>
  );
}

function JobList({ project }: { project: string }) {
  const { jobs, ready } = useJobs({ project });
  const done = useJobs({ project, status: 'completed' });
  return (
    <ul id="list" data-ready={String(ready)} data-completed={done.jobs.map((j) => j.id).join(',')}>
      {jobs.map((j) => <li key={j.id}>{`${j.id}:${j.status}:${j.progress}`}</li>)}
    </ul>
  );
}

const job = q.get('job')!;
const other = q.get('other')!;
createRoot(document.getElementById('root')!).render(
  <JobwireProvider client={jw}>
    <JobCard jobId={job} />
    <BuildPage jobId={job} />
    <JobProgressMonitor jobId={job} />
    <JobCard jobId={other} />
    <JobList project={q.get('project')!} />
  </JobwireProvider>,
);
