/** The React context carrying one shared `Jobwire` client. */
import { createContext, useContext, type ReactNode } from 'react';
import type { Jobwire } from '@jobwire/client';

const JobwireContext = createContext<Jobwire | null>(null);

/** Makes `client` available to every jobwire hook below it. One client = one socket for the whole tree. */
export function JobwireProvider({ client, children }: { client: Jobwire; children?: ReactNode }) {
  return <JobwireContext.Provider value={client}>{children}</JobwireContext.Provider>;
}

/** The client of the nearest JobwireProvider (or `override`). Throws a clear error without one. */
export function useJobwire(override?: Jobwire): Jobwire {
  const c = useContext(JobwireContext);
  const client = override ?? c;
  if (!client) throw new Error('@jobwire/react: wrap your tree in <JobwireProvider client={new Jobwire({ url })}>');
  return client;
}
