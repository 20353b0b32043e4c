-- Sample schema for `make demo`: the ShardingSphere example tables, one data source (demo_ds_0).
CREATE DATABASE IF NOT EXISTS demo_ds_0;
USE demo_ds_0;
DROP TABLE IF EXISTS t_order_item;
DROP TABLE IF EXISTS t_order;
CREATE TABLE t_order (
  order_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id INT NOT NULL,
  status VARCHAR(50)
);
CREATE TABLE t_order_item (
  order_item_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  order_id BIGINT NOT NULL,
  user_id INT NOT NULL,
  status VARCHAR(50),
  KEY idx_order (order_id)
);
INSERT INTO t_order (order_id, user_id, status) VALUES
  (1, 10, 'INIT'), (2, 10, 'PAID'), (3, 11, 'INIT'), (4, 11, 'SHIPPED'), (5, 12, 'PAID'),
  (6, 12, 'INIT'), (7, 13, 'CANCELLED'), (8, 13, 'PAID'), (9, 14, 'SHIPPED'), (10, 14, 'INIT');
INSERT INTO t_order_item (order_id, user_id, status) VALUES
  (1, 10, 'INIT'), (2, 10, 'PAID'), (2, 10, 'PAID'), (3, 11, 'INIT'), (4, 11, 'SHIPPED'),
  (5, 12, 'PAID'), (6, 12, 'INIT'), (8, 13, 'PAID'), (9, 14, 'SHIPPED'), (10, 14, 'INIT');
