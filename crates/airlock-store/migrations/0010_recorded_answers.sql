-- Recorded answers (profile option `record: full`): each HTTP answer an execution
-- received, sealed with the vault (AAD "answer:<execution_id>:<seq>"), kept until
-- the retention sweep deletes it. `seq` orders one execution's answers.
CREATE TABLE egress_answers (
    execution_id  TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    at            TEXT NOT NULL,
    sealed        BLOB NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
CREATE INDEX egress_answers_by_at ON egress_answers(at);
