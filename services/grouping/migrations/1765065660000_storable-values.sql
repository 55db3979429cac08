-- Up Migration

-- Every value the schemas accept must be storable (README, "Storing what the schemas accept").
-- A held occurrence is kept whole and exactly: `json` keeps the text as written, so a NUL (`\u0000`) or
-- a lone surrogate inside it comes back as it went in (jsonb refuses both, SQLSTATE 22P05).
ALTER TABLE held_occurrences ALTER COLUMN occurrence TYPE json USING occurrence::json;

-- Environment names have no length limit; a btree entry does (about 2.7 kB), so names are unique by
-- their md5 rather than as the key itself (SQLSTATE 54000 otherwise).
ALTER TABLE environments DROP CONSTRAINT environments_pkey;
CREATE UNIQUE INDEX environments_key ON environments (project_id, md5(name));
ALTER TABLE group_environments DROP CONSTRAINT group_environments_pkey;
CREATE UNIQUE INDEX group_environments_key ON group_environments (group_id, md5(environment));

-- Down Migration
DROP INDEX group_environments_key;
ALTER TABLE group_environments ADD PRIMARY KEY (group_id, environment);
DROP INDEX environments_key;
ALTER TABLE environments ADD PRIMARY KEY (project_id, name);
ALTER TABLE held_occurrences ALTER COLUMN occurrence TYPE jsonb USING occurrence::jsonb;
