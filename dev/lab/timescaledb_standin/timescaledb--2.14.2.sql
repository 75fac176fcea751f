-- agbotkit.dr lab stand-in for TimescaleDB 2.14.2: SQL only, no shared library.
-- It provides what the DR automation reads and calls, with the real names and shapes:
--   timescaledb_information.hypertables / .chunks (views over a small registry),
--   create_hypertable(regclass, name [, if_not_exists]), timescaledb_pre_restore(), timescaledb_post_restore().
-- create_hypertable registers the table and makes one real (empty) chunk table
-- _timescaledb_internal._hyper_<id>_1_chunk INHERITS (table), so chunks exist, are dumped and restored by
-- pg_dump/pg_restore like real ones, and can be dropped to simulate a missing chunk. Rows stay in the parent.
-- The registry is marked with pg_extension_config_dump so a dump/restore keeps the hypertables.

\echo Use "CREATE EXTENSION timescaledb" to load this file. \quit

CREATE SCHEMA _timescaledb_catalog;
CREATE SCHEMA _timescaledb_internal;
CREATE SCHEMA timescaledb_information;

CREATE TABLE _timescaledb_catalog.hypertable (
    id serial PRIMARY KEY,
    schema_name name NOT NULL,
    table_name name NOT NULL,
    time_column_name name NOT NULL,
    UNIQUE (schema_name, table_name)
);

CREATE TABLE _timescaledb_catalog.chunk (
    id serial PRIMARY KEY,
    hypertable_id integer NOT NULL,
    schema_name name NOT NULL,
    table_name name NOT NULL,
    range_start timestamptz,
    range_end timestamptz
);

-- Per database, not dumped: whether a restore is in progress (the real extension's timescaledb.restoring GUC).
CREATE TABLE _timescaledb_catalog.restore_state (
    id integer PRIMARY KEY CHECK (id = 1),
    restoring boolean NOT NULL,
    changed_at timestamptz NOT NULL
);
INSERT INTO _timescaledb_catalog.restore_state VALUES (1, false, now());

SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.hypertable', '');
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.hypertable_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.chunk', '');
SELECT pg_catalog.pg_extension_config_dump('_timescaledb_catalog.chunk_id_seq', '');

CREATE VIEW timescaledb_information.hypertables AS
SELECT h.schema_name AS hypertable_schema,
       h.table_name AS hypertable_name,
       pg_catalog.pg_get_userbyid(c.relowner) AS owner,
       1::smallint AS num_dimensions,
       (SELECT count(*) FROM _timescaledb_catalog.chunk k WHERE k.hypertable_id = h.id)::bigint AS num_chunks,
       false AS compression_enabled,
       NULL::name[] AS tablespaces
FROM _timescaledb_catalog.hypertable h
JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', h.schema_name, h.table_name));

CREATE VIEW timescaledb_information.chunks AS
SELECT h.schema_name AS hypertable_schema,
       h.table_name AS hypertable_name,
       k.schema_name AS chunk_schema,
       k.table_name AS chunk_name,
       h.time_column_name AS primary_dimension,
       'timestamp with time zone'::regtype AS primary_dimension_type,
       k.range_start,
       k.range_end,
       NULL::bigint AS range_start_integer,
       NULL::bigint AS range_end_integer,
       false AS is_compressed,
       NULL::name AS chunk_tablespace
FROM _timescaledb_catalog.chunk k
JOIN _timescaledb_catalog.hypertable h ON h.id = k.hypertable_id;

CREATE VIEW timescaledb_information.dimensions AS
SELECT h.schema_name AS hypertable_schema, h.table_name AS hypertable_name, 1 AS dimension_number,
       h.time_column_name AS column_name, 'timestamp with time zone'::regtype AS column_type,
       'Time'::text AS dimension_type
FROM _timescaledb_catalog.hypertable h;

CREATE FUNCTION @extschema@.create_hypertable(relation regclass, time_column_name name,
                                              if_not_exists boolean DEFAULT false)
RETURNS TABLE (hypertable_id integer, schema_name name, table_name name, created boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $fn$
DECLARE
    s name;
    t name;
    hid integer;
    typ regtype;
    chunk name;
BEGIN
    SELECT n.nspname, c.relname INTO s, t
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = relation;
    SELECT a.atttypid::regtype INTO typ
    FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = time_column_name AND NOT a.attisdropped;
    IF typ IS NULL THEN
        RAISE EXCEPTION 'column "%" does not exist', time_column_name USING ERRCODE = 'undefined_column';
    END IF;
    IF typ NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype,
                   'bigint'::regtype, 'integer'::regtype, 'smallint'::regtype) THEN
        RAISE EXCEPTION 'invalid type for dimension "%"', time_column_name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT h.id INTO hid FROM _timescaledb_catalog.hypertable h WHERE h.schema_name = s AND h.table_name = t;
    IF hid IS NOT NULL THEN
        IF if_not_exists THEN
            RAISE NOTICE 'table "%" is already a hypertable, skipping', t;
            RETURN QUERY SELECT hid, s, t, false;
            RETURN;
        END IF;
        RAISE EXCEPTION 'table "%" is already a hypertable', t USING ERRCODE = 'duplicate_object';
    END IF;
    INSERT INTO _timescaledb_catalog.hypertable (schema_name, table_name, time_column_name)
    VALUES (s, t, time_column_name) RETURNING id INTO hid;
    chunk := format('_hyper_%s_1_chunk', hid);
    EXECUTE format('CREATE TABLE _timescaledb_internal.%I () INHERITS (%I.%I)', chunk, s, t);
    INSERT INTO _timescaledb_catalog.chunk (hypertable_id, schema_name, table_name, range_start, range_end)
    VALUES (hid, '_timescaledb_internal', chunk, '-infinity', 'infinity');
    RETURN QUERY SELECT hid, s, t, true;
END
$fn$;

CREATE FUNCTION @extschema@.timescaledb_pre_restore() RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $fn$
BEGIN
    UPDATE _timescaledb_catalog.restore_state SET restoring = true, changed_at = now() WHERE id = 1;
    PERFORM set_config('timescaledb.restoring', 'on', false);
    EXECUTE format('ALTER DATABASE %I SET timescaledb.restoring = %L', current_database(), 'on');
    RETURN true;
END
$fn$;

CREATE FUNCTION @extschema@.timescaledb_post_restore() RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $fn$
BEGIN
    UPDATE _timescaledb_catalog.restore_state SET restoring = false, changed_at = now() WHERE id = 1;
    EXECUTE format('ALTER DATABASE %I RESET timescaledb.restoring', current_database());
    PERFORM set_config('timescaledb.restoring', 'off', false);
    RETURN true;
END
$fn$;
