"""The processes patientpool runs as: `patientpool serve` and its workers (process.serve), the
command line (process.cli) with its operator commands, the demo loader, the patient import, the
WeCom group sync, background jobs (process.jobs) and the settings they are all started with
(process.settings). Everything here sits above `api/`, which is only the GraphQL and HTTP edge
and is handed the settings as a value (api.edge_settings)."""
