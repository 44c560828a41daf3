/** Every Redis key of ours, all under the queue prefix: the one place that names them (BullMQ names its own). */
export const redisKeys = (prefix: string) => ({
  cancel: (jobId: string) => `${prefix}:cancel:${jobId}`,
  /** Live workers: when each one's heartbeat lapses (a sorted set, scored in ms) and its last heartbeat record (a hash). */
  workers: `${prefix}:workers`,
  workerRecords: `${prefix}:worker-records`,
  /** Renewed by the worker training the job, with the worker heartbeat; absent: nobody is. */
  jobHeartbeat: (jobId: string) => `${prefix}:job-heartbeat:${jobId}`,
  idempotency: (owner: string, key: string) => `${prefix}:idempotency:${owner}:${key}`,
  apiKeys: `${prefix}:api-keys`,
  /** @fastify/rate-limit's counters of requests per key (its namespace: it appends the key id). */
  rateLimitNamespace: `${prefix}:rate:`,
  /** Requests without a valid key, per client address, in the current window. */
  anonymousRequests: (address: string) => `${prefix}:rate-anonymous:${address}`,
  /** Held by the API process that runs this hour's retention sweep. */
  retentionSweepLock: `${prefix}:retention-sweep`,
  /** Job ids by submission time (sorted sets): every job, and each owner's. */
  allJobs: `${prefix}:jobs`,
  ownerJobs: (owner: string) => `${prefix}:owner-jobs:${owner}`,
  /**
   * Job ids by a label (name, tag or mode) and submission time (sorted sets): every owner's and one
   * owner's. The label's value is hashed into the key: names hold spaces and colons.
   */
  labelledJobs: (scope: { owner: string } | 'everyone', label: string) =>
    scope === 'everyone' ? `${prefix}:jobs-by:${label}` : `${prefix}:owner-jobs-by:${scope.owner}:${label}`,
  /** Each owner's jobs that may still be queued or running (the quota counts these). */
  openJobs: (owner: string) => `${prefix}:open-jobs:${owner}`,
  /** The jobs that train on an uploaded dataset (it cannot be deleted while one is open). */
  datasetJobs: (datasetId: string) => `${prefix}:dataset-jobs:${datasetId}`,
  /** Bytes of models and checkpoints each of an owner's jobs keeps (a hash: job id -> bytes), as its worker last measured. */
  artifactBytes: (owner: string) => `${prefix}:artifact-bytes:${owner}`,
  /** Their sum over every owner, kept with each change (ArtifactLedger). */
  artifactBytesTotal: `${prefix}:artifact-bytes-total`,
  /** Owners' artifactBytes keys changed while there was no total: the sum that starts it reads them (ArtifactLedger). */
  artifactBytesUnsummed: `${prefix}:artifact-bytes-unsummed`,
  /** Each owner's unpacked upload bytes (a hash: upload id -> bytes) and reservations of uploads and preflights under way. */
  datasetBytes: (owner: string) => `${prefix}:dataset-bytes:${owner}`,
  /** Held (with a lease) by the process downloading a weights variant: the others wait for its copy. */
  weightsLock: (variant: string) => `${prefix}:weights-lock:${variant}`,
  /** Download archives built on request: last use (sorted set) and size (hash), by store key. */
  archivesUsed: `${prefix}:archives:used`,
  archiveBytes: `${prefix}:archives:bytes`,
  /** Each owner's model aliases (a hash: name -> target) and an alias's history (a list, newest first). */
  modelAliases: (owner: string) => `${prefix}:model-aliases:${owner}`,
  modelAliasHistory: (owner: string, name: string) => `${prefix}:model-alias-history:${owner}:${name}`,
  /** Each owner's webhooks (a hash: id -> url, events, secret) and each webhook's deliveries (a list, newest first). */
  webhooks: (owner: string) => `${prefix}:webhooks:${owner}`,
  webhookDeliveries: (id: string) => `${prefix}:webhook-deliveries:${id}`,
  /** Sweep ids by creation time (sorted sets): every sweep, each owner's, and those still running (the API advances these). */
  allSweeps: `${prefix}:sweeps`,
  ownerSweeps: (owner: string) => `${prefix}:owner-sweeps:${owner}`,
  activeSweeps: `${prefix}:active-sweeps`,
  /** Sweep ids by a label (name or tag), as labelledJobs. */
  labelledSweeps: (scope: { owner: string } | 'everyone', label: string) =>
    scope === 'everyone' ? `${prefix}:sweeps-by:${label}` : `${prefix}:owner-sweeps-by:${scope.owner}:${label}`,
  /** A sweep: its spec, owner and state (a hash); its trials (index -> parameters and job); each trial's objective per epoch. */
  sweep: (id: string) => `${prefix}:sweep:${id}`,
  sweepTrials: (id: string) => `${prefix}:sweep:${id}:trials`,
  sweepEpochs: (id: string) => `${prefix}:sweep:${id}:epochs`,
  /**
   * The trials of a bracket that reached a rung, in arrival order (a list; bracket 0 keeps the key sweeps
   * had before brackets), and each trial's place in it (a hash: "trial:epoch" -> place).
   */
  sweepRung: (id: string, epoch: number, bracket: number) => `${prefix}:sweep:${id}:rung:${epoch}${bracket ? `:bracket:${bracket}` : ''}`,
  sweepArrivals: (id: string) => `${prefix}:sweep:${id}:arrivals`,
  /** Held (with a lease) by the API process advancing the sweep. */
  sweepLock: (id: string) => `${prefix}:sweep:${id}:lock`,
});
