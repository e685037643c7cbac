-- 1,000,000 realistic customers for scripts/bench-sync (deterministic).
DROP SCHEMA IF EXISTS sluice_bench CASCADE;
CREATE SCHEMA sluice_bench;
CREATE TABLE sluice_bench.customers (
    id         bigint PRIMARY KEY,
    email      text NOT NULL,
    first_name text,
    last_name  text,
    ltv        numeric(12,2),
    plan       text,
    signed_up  timestamptz,
    active     boolean
);
SELECT setseed(0.42);
INSERT INTO sluice_bench.customers
SELECT g,
       lower(f.name || '.' || l.name || g) || '@' ||
           (ARRAY['gmail.com','yahoo.com','outlook.com','example.com','acme.io','proton.me'])[1 + (g * 7) % 6],
       f.name,
       l.name,
       round((random() * random() * 25000)::numeric, 2),
       (ARRAY['free','free','free','starter','starter','pro','pro','enterprise'])[1 + floor(random() * 8)::int],
       timestamptz '2018-01-01 00:00:00+00' + random() * interval '2500 days',
       random() < 0.85
FROM generate_series(1, 1000000) g
CROSS JOIN LATERAL (SELECT (ARRAY['James','Mary','Robert','Patricia','John','Jennifer','Michael','Linda',
        'David','Elizabeth','William','Barbara','Richard','Susan','Joseph','Jessica','Thomas','Sarah',
        'Chen','Aisha','Mateo','Sofia','Yuki','Olga','Ravi','Fatima','Lucas','Emma','Noah','Zoë'])[1 + (g * 31 + 7) % 30] AS name) f
CROSS JOIN LATERAL (SELECT (ARRAY['Smith','Johnson','Williams','Brown','Jones','Garcia','Miller','Davis',
        'Rodriguez','Martinez','Hernandez','Lopez','Gonzalez','Wilson','Anderson','Thomas','Taylor','Moore',
        'Nguyen','Kim','Müller','Rossi','Dubois','Kowalski','Okafor','Singh','Sato','Ivanova','Silva','O''Brien'])[1 + (g * 17 + 3) % 30] AS name) l;
ANALYZE sluice_bench.customers;
