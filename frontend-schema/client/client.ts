// A typed client over the generated documents, as a frontend would write one; `tsc --strict`
// compiles it in CI. Two ways to send a trusted document: urql with its persisted exchange
// (GET by hash for queries, POST by hash for mutations), or plain fetch with `documentId`.
import { Client, fetchExchange } from '@urql/core'
import { persistedExchange } from '@urql/exchange-persisted'
import type { TypedDocumentNode } from '@graphql-typed-document-node/core'
import {
  MyFollowUpsTodayDocument,
  PatientListDocument,
  type MyFollowUpsTodayQuery,
  type PatientListQuery,
} from '../generated/graphql'

/** A generated document: typed, with the SHA-256 the server trusts it under. */
type Persisted<R, V> = TypedDocumentNode<R, V> & { __meta__?: { hash?: string } }

export interface ApiError {
  message: string
  path?: (string | number)[]
  extensions: { code: string; field?: string; requestId?: string }
}

export interface ApiResult<R> {
  data?: R | null
  errors?: ApiError[]
}

function hashOf(document: unknown): string {
  const hash = (document as { __meta__?: { hash?: string } }).__meta__?.hash
  if (!hash) throw new Error('not a persisted document: run codegen with persistedDocuments')
  return hash.replace(/^sha256:/, '')
}

/** urql on its defaults but for trusted documents: queries by GET with the hash in the URL,
 * mutations by POST with the hash; never the document text. */
export function urqlClient(url: string, token: () => string): Client {
  return new Client({
    url,
    exchanges: [
      persistedExchange({
        enforcePersistedQueries: true,
        enableForMutation: true,
        preferGetForPersistedQueries: 'within-url-limit',
        generateHash: async (_query, document) => hashOf(document),
      }),
      fetchExchange,
    ],
    fetchOptions: () => ({ headers: { authorization: `Bearer ${token()}` } }),
  })
}

/** The same with fetch alone: POST `{documentId, variables}`. */
export async function run<R, V>(
  url: string,
  token: string,
  document: Persisted<R, V>,
  variables: V,
): Promise<ApiResult<R>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ documentId: `sha256:${hashOf(document)}`, variables }),
  })
  return (await response.json()) as ApiResult<R>
}

export async function example(url: string, token: string): Promise<string[]> {
  const page: ApiResult<PatientListQuery> = await run(url, token, PatientListDocument, {
    first: 20,
  })
  const names = (page.data?.patients.edges ?? []).map((e) => e.node.name ?? '(hidden)')
  const client = urqlClient(url, () => token)
  const tasks = await client.query<MyFollowUpsTodayQuery>(MyFollowUpsTodayDocument, {}).toPromise()
  const due = (tasks.data?.followUps.edges ?? []).map((e) => e.node.dueAt)
  return [...names, ...due]
}
