// Types and trusted documents for a frontend, as graphql-codegen's client preset makes them.
// `npm ci && npm run codegen` writes generated/: typed documents (graphql.ts, gql.ts) and
// persisted-documents.json, the manifest `patientpool documents push --client NAME` takes.
import type { CodegenConfig } from '@graphql-codegen/cli'

const config: CodegenConfig = {
  schema: './schema.graphql',
  documents: ['./operations/*.graphql'],
  ignoreNoDocuments: false,
  generates: {
    './generated/': {
      preset: 'client',
      presetConfig: {
        fragmentMasking: false,
        // The server looks a document up by the SHA-256 of its text, exactly as sent here.
        persistedDocuments: { mode: 'embedHashInDocument', hashAlgorithm: 'sha256' },
      },
      config: {
        // Every custom scalar mapped, and no other allowed: Decimal money in yuan as a string
        // ("1280.50"), times as ISO 8601 strings with an offset.
        strictScalars: true,
        scalars: { DateTime: 'string', Decimal: 'string', JSON: 'unknown', Upload: 'File' },
        enumsAsTypes: true,
        useTypeImports: true,
      },
    },
  },
}

export default config
