-- Sample schema for the PostgreSQL demo database (demo_pg_0).
DROP TABLE IF EXISTS t_order_item;
DROP TABLE IF EXISTS t_order;
CREATE TABLE t_order (order_id bigserial PRIMARY KEY, user_id int NOT NULL, status varchar(50) NOT NULL,
                      created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE t_order_item (order_item_id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES t_order,
                           user_id int NOT NULL, sku text NOT NULL, quantity int NOT NULL);
INSERT INTO t_order (user_id, status) SELECT g % 3 + 1, CASE WHEN g % 2 = 0 THEN 'PAID' ELSE 'INIT' END
  FROM generate_series(1, 10) g;
INSERT INTO t_order_item (order_id, user_id, sku, quantity) SELECT order_id, user_id, 'sku-' || order_id, 1
  FROM t_order;
