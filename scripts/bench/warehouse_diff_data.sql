-- The model of scripts/bench-warehouse-diff: :rows customers (deterministic),
-- the columns of scripts/bench/data.sql without the name lookups.
DROP SCHEMA IF EXISTS sluice_whbench CASCADE;
CREATE SCHEMA sluice_whbench;
CREATE UNLOGGED TABLE sluice_whbench.customers (
    id         bigint PRIMARY KEY,
    email      text NOT NULL,
    ltv        numeric(12,2),
    plan       text,
    signed_up  timestamptz,
    active     boolean
);
INSERT INTO sluice_whbench.customers
SELECT g,
       'user' || g || '@' || (ARRAY['gmail.com','yahoo.com','outlook.com','example.com','acme.io','proton.me'])[1 + (g * 7) % 6],
       ((g * 7919) % 2500000) / 100.0,
       (ARRAY['free','free','free','starter','starter','pro','pro','enterprise'])[1 + (g * 13) % 8],
       timestamptz '2018-01-01 00:00:00+00' + ((g * 104729) % 216000000) * interval '1 second',
       (g % 7) <> 0
FROM generate_series(1::bigint, :rows) g;
ANALYZE sluice_whbench.customers;
