-- Up Migration
-- The counter service's scheduled activity report: the total last reported per counter.
CREATE TABLE activity_reported (
  project_id integer NOT NULL,
  fingerprint text NOT NULL,
  times_seen bigint NOT NULL,
  PRIMARY KEY (project_id, fingerprint)
);

-- Down Migration
DROP TABLE activity_reported;
