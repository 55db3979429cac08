// Lifecycle: the intake and decide consumers, the claim sweeper and the agent HTTP API, in one process.
