-- Time an execution spent paused in llm.complete, reported apart from running time.
ALTER TABLE executions ADD COLUMN llm_wait_ms INTEGER NOT NULL DEFAULT 0;
