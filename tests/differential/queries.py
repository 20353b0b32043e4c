"""The differential query corpus: SELECTs over ``sharding_db`` whose answer through dbmesh must equal the plain database's.

Each `Case` is one parametrised test id. ``ordered`` says the statement's ORDER BY fixes the row order completely
(every ORDER BY ends in a unique key, or the result has at most one row), so rows compare as a sequence;
otherwise they compare as a multiset. A statement with LIMIT/OFFSET always has a total ORDER BY, or its answer
would not be deterministic on the plain database either.

``ci`` marks statements whose MariaDB answer names one member of a group of strings its ``_ci`` collation
treats as equal (GROUP BY / DISTINCT / MIN / MAX over case or accent variants): the database may show any
member, so on MariaDB such strings are compared by their collation key. The number of groups and every
aggregate still compare exactly, so a merge that splits 'NEW' and 'new' into two groups fails. PostgreSQL
compares bytes, and its answers are compared exactly.

Per-dialect SQL: ``pg`` replaces ``sql`` for PostgreSQL; ``dialects`` restricts a case to one frontend.
``params`` are bound with ``%s`` placeholders (``$n`` for asyncpg).

``REFUSED`` lists statements dbmesh must answer with DBM-1506 (SHARDING_UNSUPPORTED) rather than a wrong
answer; each is valid SQL that the plain database answers, and ``construct`` is a pattern the error message
must contain (it names the construct).
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.differential import dataset

BOTH = ("mysql", "postgresql")


@dataclass(frozen=True)
class Case:
    id: str
    sql: str
    ordered: bool
    pg: str | None = None
    dialects: tuple[str, ...] = BOTH
    ci: bool = False
    params: tuple[object, ...] = ()

    def sql_for(self, dialect: str) -> str:
        return self.pg if dialect == "postgresql" and self.pg is not None else self.sql


_O1 = dataset.orders()[100]  # (order_id, user_id, ...)
_O2 = dataset.orders()[101]
_O3 = dataset.orders()[5000]
_OID1, _UID1 = _O1[0], _O1[1]
_OID2, _UID2 = _O2[0], _O2[1]
_OID3, _UID3 = _O3[0], _O3[1]
_LAST = dataset.orders()[-1][0]

CASES: list[Case] = []


def q(id: str, sql: str, ordered: bool = False, **kw: object) -> None:
    CASES.append(Case(id, sql, ordered, **kw))  # type: ignore[arg-type]


_ITEM_JOIN = "t_order o JOIN t_order_item i ON o.order_id = i.order_id AND o.user_id = i.user_id"

# -- projections and filters ------------------------------------------------------------------------------------------
q("select_star", "SELECT * FROM t_order")
q("select_columns", "SELECT order_id, user_id, status FROM t_order")
q("select_expression", "SELECT order_id, amount * 2, priority + 1 FROM t_order")
q("select_alias", "SELECT order_id AS id, amount AS total FROM t_order")
q("select_qualified_star", "SELECT t_order.* FROM t_order WHERE user_id < 20")
q("select_table_alias", "SELECT o.order_id, o.note FROM t_order o WHERE o.priority = 3")
q("select_items_all", "SELECT * FROM t_order_item")
q("filter_status_eq", "SELECT order_id, status FROM t_order WHERE status = 'new'")
q("filter_status_in", "SELECT order_id, status FROM t_order WHERE status IN ('PAID', 'shipped', 'émis')")
q("filter_amount_gt", "SELECT order_id, amount FROM t_order WHERE amount > 4900")
q("filter_amount_lt_negative", "SELECT order_id, amount FROM t_order WHERE amount < -400")
q("filter_amount_between", "SELECT order_id, amount FROM t_order WHERE amount BETWEEN 100 AND 105")
q("filter_created_range", "SELECT order_id, created FROM t_order WHERE created >= '2024-12-01' AND created < '2024-12-05'")
q("filter_note_null", "SELECT order_id FROM t_order WHERE note IS NULL AND user_id < 30")
q("filter_note_not_null", "SELECT order_id, note FROM t_order WHERE note IS NOT NULL AND priority = 9")
q("filter_priority_null_or", "SELECT order_id, priority FROM t_order WHERE priority IS NULL OR priority < 0")
q("filter_note_like", "SELECT order_id, note FROM t_order WHERE note LIKE 'a%'")
q("filter_note_empty", "SELECT order_id, note FROM t_order WHERE note = ''")
q("filter_note_quote", "SELECT order_id, note FROM t_order WHERE note = 'O''Brien'")
q("filter_note_trailing_space", "SELECT order_id, note FROM t_order WHERE note = 'omega'")
q("filter_not_in", "SELECT order_id FROM t_order WHERE user_id NOT IN (1, 2, 3) AND amount > 4950")
q("filter_or_mixed", "SELECT order_id FROM t_order WHERE user_id = 7 OR amount = 1234.00")
q("filter_and_or", "SELECT order_id FROM t_order WHERE (user_id = 8 OR user_id = 9) AND status <> 'pending'")
q("filter_user_range", "SELECT order_id, user_id FROM t_order WHERE user_id BETWEEN 10 AND 13")
q("filter_user_gt", "SELECT order_id FROM t_order WHERE user_id > 195")
q("filter_order_range", "SELECT order_id FROM t_order WHERE order_id BETWEEN 20000 AND 20100")
q("filter_order_lt", "SELECT order_id, user_id FROM t_order WHERE order_id < 10100")
q("filter_order_ge", f"SELECT order_id FROM t_order WHERE order_id >= {_LAST - 60}")
q("filter_case_expression", "SELECT order_id, CASE WHEN amount < 0 THEN 'refund' ELSE 'sale' END AS kind "
                            "FROM t_order WHERE user_id = 11")
q("filter_coalesce", "SELECT order_id, COALESCE(note, '-'), COALESCE(priority, -99) FROM t_order WHERE user_id = 12")
q("filter_upper", "SELECT order_id FROM t_order WHERE UPPER(status) = 'SHIPPED' AND user_id < 50")
q("filter_items_qty", "SELECT item_id, order_id, qty FROM t_order_item WHERE qty = 12 AND price > 90")
q("filter_items_sku_null", "SELECT item_id FROM t_order_item WHERE sku IS NULL AND user_id < 40")
q("filter_items_sku_eq", "SELECT item_id, sku FROM t_order_item WHERE sku IN ('d-4', 'D-4') AND qty > 10")

# -- routing by sharding key -----------------------------------------------------------------------------------------
q("point_full_key", f"SELECT * FROM t_order WHERE user_id = {_UID1} AND order_id = {_OID1}")
q("point_order_only", f"SELECT * FROM t_order WHERE order_id = {_OID2}")
q("point_user_only", f"SELECT order_id, amount FROM t_order WHERE user_id = {_UID3}")
q("point_miss", "SELECT * FROM t_order WHERE order_id = 10002")
q("point_wrong_user", f"SELECT * FROM t_order WHERE user_id = {_UID1 + 1} AND order_id = {_OID1}")
q("point_in_orders", f"SELECT order_id, user_id FROM t_order WHERE order_id IN ({_OID1}, {_OID2}, {_OID3}, 10002)")
q("point_in_users", "SELECT order_id FROM t_order WHERE user_id IN (3, 4, 5)")
q("point_user_or", "SELECT order_id FROM t_order WHERE user_id = 3 OR user_id = 8")
q("point_key_or_key", f"SELECT order_id FROM t_order WHERE (user_id = {_UID1} AND order_id = {_OID1}) "
                      f"OR (user_id = {_UID2} AND order_id = {_OID2})")
q("point_user_and_range", "SELECT order_id FROM t_order WHERE user_id = 20 AND order_id > 25000")
q("point_items_by_order", f"SELECT item_id, qty, price FROM t_order_item WHERE order_id = {_OID1}")
q("point_items_full_key", f"SELECT * FROM t_order_item WHERE user_id = {_UID3} AND order_id = {_OID3}")
q("point_item_id", "SELECT * FROM t_order_item WHERE item_id = 777")
q("point_items_in_items", "SELECT item_id, order_id FROM t_order_item WHERE item_id IN (1, 2, 3, 30000, 99999)")
q("point_param_full_key", "SELECT order_id, status, amount FROM t_order WHERE user_id = %s AND order_id = %s",
  params=(_UID2, _OID2))
q("point_param_user", "SELECT order_id FROM t_order WHERE user_id = %s", params=(_UID1,))
q("point_param_in", "SELECT order_id FROM t_order WHERE order_id IN (%s, %s)", params=(_OID1, _OID3))
q("point_param_range", "SELECT order_id FROM t_order WHERE user_id = %s AND amount > %s", params=(14, 2500))
q("point_user_zero", "SELECT order_id, user_id FROM t_order WHERE user_id = 0")
q("point_user_max", f"SELECT order_id FROM t_order WHERE user_id = {dataset.USERS - 1}")

# -- ORDER BY and LIMIT ----------------------------------------------------------------------------------------------
q("order_by_key", "SELECT order_id, user_id FROM t_order ORDER BY order_id", True)
q("order_by_key_desc", "SELECT order_id FROM t_order ORDER BY order_id DESC", True)
q("order_by_amount_key", "SELECT order_id, amount FROM t_order ORDER BY amount, order_id", True)
q("order_by_amount_desc_key", "SELECT order_id, amount FROM t_order ORDER BY amount DESC, order_id DESC", True)
q("order_by_mixed_directions", "SELECT order_id, user_id, amount FROM t_order ORDER BY user_id DESC, amount, order_id",
  True)
q("order_by_note_nulls", "SELECT order_id, note FROM t_order ORDER BY note, order_id", True)
q("order_by_note_desc", "SELECT order_id, note FROM t_order ORDER BY note DESC, order_id", True)
q("order_by_status_case", "SELECT order_id, status FROM t_order ORDER BY status, order_id", True)
q("order_by_priority_nulls", "SELECT order_id, priority FROM t_order ORDER BY priority, order_id", True)
q("order_by_priority_desc_nulls", "SELECT order_id, priority FROM t_order ORDER BY priority DESC, order_id", True)
q("order_by_date", "SELECT order_id, created FROM t_order ORDER BY created DESC, order_id", True)
q("order_by_not_selected", "SELECT order_id FROM t_order ORDER BY amount DESC, order_id LIMIT 25", True)
q("order_by_not_selected_string", "SELECT order_id, amount FROM t_order ORDER BY note, order_id LIMIT 30", True)
q("order_by_alias", "SELECT order_id AS id, amount AS a FROM t_order ORDER BY a, id LIMIT 40", True)
q("order_by_ordinal", "SELECT order_id, amount FROM t_order ORDER BY 2 DESC, 1 LIMIT 40", True)
q("order_by_expression", "SELECT order_id, amount FROM t_order ORDER BY amount * -1, order_id LIMIT 20", True)
q("order_by_qualified", "SELECT o.order_id, o.created FROM t_order o ORDER BY o.created, o.order_id LIMIT 15", True)
q("limit_small", "SELECT order_id, amount FROM t_order ORDER BY order_id LIMIT 5", True)
q("limit_offset", "SELECT order_id FROM t_order ORDER BY order_id LIMIT 10 OFFSET 20", True)
q("limit_offset_big", "SELECT order_id FROM t_order ORDER BY order_id LIMIT 10 OFFSET 9995", True)
q("limit_beyond_end", "SELECT order_id FROM t_order ORDER BY order_id LIMIT 50 OFFSET 20000", True)
q("limit_larger_than_table", "SELECT order_id FROM t_order WHERE user_id < 5 ORDER BY order_id LIMIT 100000", True)
q("limit_zero", "SELECT order_id FROM t_order ORDER BY order_id LIMIT 0", True)
q("limit_one", "SELECT * FROM t_order ORDER BY amount DESC, order_id LIMIT 1", True)
q("limit_string_order", "SELECT order_id, note FROM t_order ORDER BY note DESC, order_id DESC LIMIT 30 OFFSET 100",
  True)
q("limit_status_order", "SELECT order_id, status FROM t_order ORDER BY status, order_id LIMIT 25 OFFSET 2000", True)
q("limit_priority_nulls", "SELECT order_id, priority FROM t_order ORDER BY priority, order_id LIMIT 20 OFFSET 2490",
  True)
q("limit_on_one_shard", f"SELECT order_id, amount FROM t_order WHERE user_id = {_UID1} ORDER BY amount, order_id "
                        "LIMIT 3 OFFSET 1", True)
q("limit_filtered", "SELECT order_id, amount FROM t_order WHERE amount < 0 ORDER BY amount, order_id LIMIT 12 OFFSET 7",
  True)
q("limit_mysql_comma", "SELECT order_id FROM t_order ORDER BY order_id DESC LIMIT 30, 10", True, dialects=("mysql",))
q("limit_items", "SELECT item_id, price FROM t_order_item ORDER BY price DESC, item_id LIMIT 50", True)
q("limit_items_offset", "SELECT item_id FROM t_order_item ORDER BY qty, price, item_id LIMIT 10 OFFSET 15000", True)
q("order_nulls_first_pg", "SELECT order_id, note FROM t_order ORDER BY note NULLS FIRST, order_id LIMIT 40", True,
  dialects=("postgresql",))
q("order_nulls_last_desc_pg", "SELECT order_id, priority FROM t_order ORDER BY priority DESC NULLS LAST, order_id "
                              "LIMIT 40", True, dialects=("postgresql",))
q("order_by_param_limit", "SELECT order_id FROM t_order WHERE amount > %s ORDER BY order_id LIMIT 7", True,
  params=(4000,))

# -- aggregates without GROUP BY -------------------------------------------------------------------------------------
q("agg_count_star", "SELECT COUNT(*) FROM t_order", True)
q("agg_count_star_lower", "select count(*) from t_order", True)
q("agg_count_alias", "SELECT COUNT(*) AS n FROM t_order", True)
q("agg_count_col_nulls", "SELECT COUNT(note), COUNT(priority) FROM t_order", True)
q("agg_count_one", "SELECT COUNT(1) FROM t_order_item", True)
q("agg_sum_decimal", "SELECT SUM(amount) FROM t_order", True)
q("agg_sum_int", "SELECT SUM(qty) FROM t_order_item", True)
q("agg_sum_int_nulls", "SELECT SUM(priority) FROM t_order", True)
q("agg_min_max_decimal", "SELECT MIN(amount), MAX(amount) FROM t_order", True)
q("agg_min_max_int", "SELECT MIN(priority), MAX(priority) FROM t_order", True)
q("agg_min_max_date", "SELECT MIN(created), MAX(created) FROM t_order", True)
q("agg_min_max_string", "SELECT MIN(note), MAX(note) FROM t_order", True, ci=True)
q("agg_min_max_status", "SELECT MIN(status), MAX(status) FROM t_order", True, ci=True)
q("agg_avg_decimal", "SELECT AVG(amount) FROM t_order", True)
q("agg_avg_int", "SELECT AVG(qty) FROM t_order_item", True)
q("agg_avg_int_nulls", "SELECT AVG(priority) FROM t_order", True)
q("agg_avg_price", "SELECT AVG(price) FROM t_order_item", True)
q("agg_count_distinct", "SELECT COUNT(DISTINCT user_id) FROM t_order", True)
q("agg_count_distinct_string", "SELECT COUNT(DISTINCT status) FROM t_order", True)
q("agg_count_distinct_note", "SELECT COUNT(DISTINCT note) FROM t_order", True)
q("agg_sum_distinct", "SELECT SUM(DISTINCT amount) FROM t_order", True)
q("agg_sum_distinct_int", "SELECT SUM(DISTINCT priority) FROM t_order", True)
q("agg_avg_distinct", "SELECT AVG(DISTINCT priority) FROM t_order", True)
q("agg_avg_distinct_decimal", "SELECT AVG(DISTINCT amount) FROM t_order", True)
q("agg_all_together", "SELECT COUNT(*), COUNT(note), SUM(amount), MIN(amount), MAX(amount), AVG(amount), "
                      "COUNT(DISTINCT user_id) FROM t_order", True)
q("agg_filtered", "SELECT COUNT(*), SUM(amount), AVG(amount) FROM t_order WHERE status = 'PAID'", True)
q("agg_filtered_range", "SELECT COUNT(*), MAX(order_id) FROM t_order WHERE order_id BETWEEN 15000 AND 16000", True)
q("agg_one_shard", f"SELECT COUNT(*), SUM(amount), AVG(amount) FROM t_order WHERE user_id = {_UID2}", True)
q("agg_one_node", f"SELECT COUNT(*), SUM(qty) FROM t_order_item WHERE user_id = {_UID1} AND order_id = {_OID1}", True)
q("agg_sum_case", "SELECT SUM(CASE WHEN amount < 0 THEN 1 ELSE 0 END), COUNT(*) FROM t_order", True)
q("agg_sum_expression_arg", "SELECT SUM(qty * price), MAX(qty * price) FROM t_order_item", True)
q("agg_aliases", "SELECT COUNT(*) AS c, SUM(amount) AS s, AVG(amount) AS a FROM t_order WHERE priority = 4", True)
q("agg_mixed_case_names", "SELECT Count(*), sum(Amount), Avg(amount) FROM t_order", True)
q("agg_param", "SELECT COUNT(*), SUM(amount) FROM t_order WHERE user_id > %s", True, params=(150,))

# -- aggregates on empty inputs --------------------------------------------------------------------------------------
q("empty_agg_all", "SELECT COUNT(*), COUNT(note), SUM(amount), MIN(amount), MAX(amount), AVG(amount) "
                   "FROM t_order WHERE amount > 1000000", True)
q("empty_agg_distinct", "SELECT COUNT(DISTINCT user_id), SUM(DISTINCT amount), AVG(DISTINCT priority) "
                        "FROM t_order WHERE order_id = 10002", True)
q("empty_agg_one_shard", "SELECT COUNT(*), SUM(qty), AVG(price) FROM t_order_item WHERE user_id = 3 AND qty > 100",
  True)
q("empty_group_by", "SELECT user_id, COUNT(*) FROM t_order WHERE amount > 1000000 GROUP BY user_id")
q("empty_select", "SELECT * FROM t_order WHERE user_id = 100000")
q("empty_order_limit", "SELECT order_id FROM t_order WHERE note = 'nothing' ORDER BY order_id LIMIT 5", True)
q("empty_distinct", "SELECT DISTINCT status FROM t_order WHERE amount > 1000000")
q("empty_agg_min_string", "SELECT MIN(note), MAX(created) FROM t_order WHERE priority = 1000", True)

# -- GROUP BY and HAVING ---------------------------------------------------------------------------------------------
q("group_user", "SELECT user_id, COUNT(*) FROM t_order GROUP BY user_id")
q("group_user_ordered", "SELECT user_id, COUNT(*), SUM(amount) FROM t_order GROUP BY user_id ORDER BY user_id", True)
q("group_user_all_aggs", "SELECT user_id, COUNT(*), COUNT(note), SUM(amount), MIN(amount), MAX(amount), AVG(amount), "
                         "AVG(priority) FROM t_order GROUP BY user_id ORDER BY user_id", True)
q("group_status", "SELECT status, COUNT(*), SUM(amount) FROM t_order GROUP BY status", ci=True)
q("group_status_ordered", "SELECT status, COUNT(*) FROM t_order GROUP BY status ORDER BY status", True, ci=True)
q("group_note_nulls", "SELECT note, COUNT(*) FROM t_order GROUP BY note", ci=True)
q("group_note_ordered", "SELECT note, COUNT(*), MIN(order_id) FROM t_order GROUP BY note ORDER BY note", True, ci=True)
q("group_priority_nulls", "SELECT priority, COUNT(*), AVG(amount) FROM t_order GROUP BY priority ORDER BY priority",
  True)
q("group_priority_desc", "SELECT priority, SUM(amount) FROM t_order GROUP BY priority ORDER BY priority DESC", True)
q("group_date", "SELECT created, COUNT(*) FROM t_order GROUP BY created")
q("group_date_limit", "SELECT created, COUNT(*) FROM t_order GROUP BY created ORDER BY created DESC LIMIT 10", True)
q("group_two_keys", "SELECT user_id, priority, COUNT(*) FROM t_order GROUP BY user_id, priority")
q("group_two_keys_ordered", "SELECT user_id, priority, COUNT(*) FROM t_order WHERE user_id < 30 "
                            "GROUP BY user_id, priority ORDER BY user_id, priority", True)
q("group_expression", "SELECT user_id % 10, COUNT(*) FROM t_order GROUP BY user_id % 10")
q("group_expression_alias", "SELECT user_id % 10 AS bucket, SUM(amount) AS s FROM t_order GROUP BY user_id % 10 "
                            "ORDER BY bucket", True)
q("group_by_alias_mysql", "SELECT user_id % 7 AS b, COUNT(*) FROM t_order GROUP BY b ORDER BY b", True)
q("group_by_ordinal", "SELECT priority, COUNT(*) FROM t_order GROUP BY 1 ORDER BY 1", True)
q("group_order_by_count", "SELECT user_id, COUNT(*) AS n FROM t_order GROUP BY user_id ORDER BY n DESC, user_id "
                          "LIMIT 10", True)
q("group_order_by_sum_not_selected", "SELECT user_id FROM t_order GROUP BY user_id ORDER BY SUM(amount) DESC, user_id "
                                     "LIMIT 15", True)
q("group_order_by_avg", "SELECT user_id, AVG(amount) FROM t_order GROUP BY user_id ORDER BY AVG(amount), user_id "
                        "LIMIT 10", True)
q("group_key_not_selected", "SELECT COUNT(*), SUM(amount) FROM t_order GROUP BY user_id")
q("group_having_count", "SELECT user_id, COUNT(*) FROM t_order GROUP BY user_id HAVING COUNT(*) > 60")
q("group_having_sum", "SELECT user_id, SUM(amount) FROM t_order GROUP BY user_id HAVING SUM(amount) > 140000 "
                      "ORDER BY user_id", True)
q("group_having_not_selected", "SELECT user_id FROM t_order GROUP BY user_id HAVING AVG(amount) > 2700")
q("group_having_alias", "SELECT user_id, COUNT(*) AS n FROM t_order GROUP BY user_id HAVING n < 40",
  pg="SELECT user_id, COUNT(*) AS n FROM t_order GROUP BY user_id HAVING COUNT(*) < 40")
q("group_having_and", "SELECT priority, COUNT(*), MIN(amount) FROM t_order GROUP BY priority "
                      "HAVING COUNT(*) > 700 AND MIN(amount) < 0")
q("group_having_key", "SELECT priority, COUNT(*) FROM t_order GROUP BY priority HAVING priority > 5")
q("group_having_limit", "SELECT user_id, MAX(amount) FROM t_order GROUP BY user_id HAVING MAX(amount) > 4990 "
                        "ORDER BY user_id LIMIT 5 OFFSET 2", True)
q("group_count_distinct", "SELECT user_id, COUNT(DISTINCT status) FROM t_order GROUP BY user_id ORDER BY user_id", True)
q("group_sum_distinct", "SELECT priority, SUM(DISTINCT amount), COUNT(DISTINCT user_id) FROM t_order "
                        "GROUP BY priority ORDER BY priority", True)
q("group_avg_distinct", "SELECT user_id % 5, AVG(DISTINCT priority) FROM t_order GROUP BY user_id % 5")
q("group_distinct_and_plain", "SELECT status, COUNT(*), COUNT(DISTINCT user_id), SUM(DISTINCT priority) "
                              "FROM t_order GROUP BY status", ci=True)
q("group_one_shard", f"SELECT status, COUNT(*) FROM t_order WHERE user_id = {_UID1} GROUP BY status", ci=True)
q("group_filtered_range", "SELECT user_id, COUNT(*) FROM t_order WHERE order_id BETWEEN 12000 AND 14000 "
                          "GROUP BY user_id")
q("group_items_order", "SELECT order_id, COUNT(*), SUM(qty), SUM(price) FROM t_order_item WHERE user_id < 20 "
                       "GROUP BY order_id")
q("group_items_sku", "SELECT sku, COUNT(*), AVG(price), MAX(qty) FROM t_order_item GROUP BY sku", ci=True)
q("group_items_qty_ordered", "SELECT qty, COUNT(*), SUM(price), AVG(price) FROM t_order_item GROUP BY qty "
                             "ORDER BY qty DESC", True)
q("group_min_max_string", "SELECT user_id, MIN(note), MAX(status) FROM t_order WHERE user_id < 25 GROUP BY user_id",
  ci=True)
q("group_case_key", "SELECT CASE WHEN amount < 0 THEN 'neg' ELSE 'pos' END AS sign, COUNT(*), SUM(amount) "
                    "FROM t_order GROUP BY CASE WHEN amount < 0 THEN 'neg' ELSE 'pos' END")
q("group_upper_status", "SELECT UPPER(status) AS s, COUNT(*) FROM t_order GROUP BY UPPER(status) ORDER BY s", True,
  ci=True)
q("group_param_having", "SELECT user_id, COUNT(*) FROM t_order GROUP BY user_id HAVING COUNT(*) > %s", params=(58,))

# -- DISTINCT --------------------------------------------------------------------------------------------------------
q("distinct_user", "SELECT DISTINCT user_id FROM t_order")
q("distinct_user_ordered", "SELECT DISTINCT user_id FROM t_order ORDER BY user_id", True)
q("distinct_status", "SELECT DISTINCT status FROM t_order", ci=True)
q("distinct_note_ordered", "SELECT DISTINCT note FROM t_order ORDER BY note", True, ci=True)
q("distinct_two_columns", "SELECT DISTINCT user_id, priority FROM t_order WHERE user_id < 50")
q("distinct_priority_nulls", "SELECT DISTINCT priority FROM t_order ORDER BY priority", True)
q("distinct_limit", "SELECT DISTINCT user_id FROM t_order ORDER BY user_id DESC LIMIT 10 OFFSET 5", True)
q("distinct_date", "SELECT DISTINCT created FROM t_order WHERE created < '2023-02-01'")
q("distinct_amount_limit", "SELECT DISTINCT amount FROM t_order ORDER BY amount LIMIT 30", True)
q("distinct_expression", "SELECT DISTINCT user_id % 3 FROM t_order")
q("distinct_items_qty", "SELECT DISTINCT qty FROM t_order_item ORDER BY qty", True)
q("distinct_one_shard", f"SELECT DISTINCT status FROM t_order WHERE user_id = {_UID2}", ci=True)

# -- binding-table joins ---------------------------------------------------------------------------------------------
q("join_one_user", f"SELECT o.order_id, i.item_id, i.qty FROM {_ITEM_JOIN} WHERE o.user_id = {_UID1} "
                   "ORDER BY i.item_id", True)
q("join_one_order", f"SELECT o.order_id, o.amount, i.item_id, i.price FROM {_ITEM_JOIN} "
                    f"WHERE o.user_id = {_UID2} AND o.order_id = {_OID2} ORDER BY i.item_id", True)
q("join_full_route", f"SELECT o.order_id, i.item_id FROM {_ITEM_JOIN}")
q("join_filtered", f"SELECT o.order_id, i.item_id, i.sku FROM {_ITEM_JOIN} WHERE o.status = 'PAID' AND i.qty > 10")
q("join_order_limit", f"SELECT i.item_id, o.order_id, i.price FROM {_ITEM_JOIN} ORDER BY i.price DESC, i.item_id "
                      "LIMIT 20", True)
q("join_count", f"SELECT COUNT(*) FROM {_ITEM_JOIN}", True)
q("join_group_status", f"SELECT o.status, COUNT(*), SUM(i.qty) FROM {_ITEM_JOIN} GROUP BY o.status", ci=True)
q("join_group_order", f"SELECT o.order_id, SUM(i.qty * i.price) AS total FROM {_ITEM_JOIN} WHERE o.user_id < 10 "
                      "GROUP BY o.order_id ORDER BY o.order_id", True)
q("join_group_user_having", f"SELECT o.user_id, COUNT(i.item_id) FROM {_ITEM_JOIN} GROUP BY o.user_id "
                            "HAVING COUNT(i.item_id) > 190")
q("join_avg", f"SELECT AVG(i.price), AVG(o.amount), MAX(i.qty) FROM {_ITEM_JOIN} WHERE o.priority = 2", True)
q("join_left", "SELECT o.order_id, i.item_id FROM t_order o LEFT JOIN t_order_item i "
               "ON o.order_id = i.order_id AND o.user_id = i.user_id AND i.qty > 11 WHERE o.user_id < 8")
q("join_using_where", "SELECT o.order_id, i.item_id FROM t_order o, t_order_item i "
                      "WHERE o.order_id = i.order_id AND o.user_id = i.user_id AND o.user_id = 33")
q("join_order_range", f"SELECT o.order_id, i.item_id FROM {_ITEM_JOIN} WHERE o.order_id BETWEEN 20000 AND 20300 "
                      "ORDER BY o.order_id, i.item_id", True)
q("join_distinct", f"SELECT DISTINCT o.user_id FROM {_ITEM_JOIN} WHERE i.qty = 12 ORDER BY o.user_id", True)
q("join_reversed", "SELECT i.item_id, o.note FROM t_order_item i JOIN t_order o "
                   "ON i.order_id = o.order_id AND i.user_id = o.user_id WHERE i.user_id IN (4, 5)")

# -- broadcast and single tables -------------------------------------------------------------------------------------
q("broadcast_all", "SELECT * FROM t_status ORDER BY rank_no", True)
q("broadcast_filter", "SELECT label FROM t_status WHERE status IN ('émis', 'PAID')")
q("broadcast_count", "SELECT COUNT(*), MAX(rank_no) FROM t_status", True)
q("broadcast_join", "SELECT o.order_id, s.label FROM t_order o JOIN t_status s ON s.status = o.status "
                    "WHERE o.user_id = 21")
q("broadcast_join_group", "SELECT s.rank_no, COUNT(*) FROM t_order o JOIN t_status s ON s.status = o.status "
                          "GROUP BY s.rank_no ORDER BY s.rank_no", True)
q("broadcast_left_join", "SELECT o.order_id, s.rank_no FROM t_order o LEFT JOIN t_status s ON s.status = o.status "
                         "WHERE o.amount > 4900 ORDER BY o.order_id", True)
q("broadcast_join_three", f"SELECT o.order_id, i.item_id, s.label FROM {_ITEM_JOIN} "
                          "JOIN t_status s ON s.status = o.status WHERE o.user_id = 44 ORDER BY i.item_id", True)
q("broadcast_join_aggregate", "SELECT s.label, SUM(o.amount), AVG(o.amount) FROM t_order o "
                              "JOIN t_status s ON s.status = o.status GROUP BY s.label")
q("broadcast_subquery", "SELECT order_id FROM t_order WHERE status IN (SELECT status FROM t_status WHERE rank_no < 2) "
                        "AND user_id < 30")
q("single_all", "SELECT * FROM t_user ORDER BY user_id", True)
q("single_filter", "SELECT user_id, name FROM t_user WHERE city = 'Zurich'")
q("single_group", "SELECT city, COUNT(*) FROM t_user GROUP BY city", ci=True)
q("single_limit", "SELECT user_id, name FROM t_user ORDER BY name, user_id LIMIT 10 OFFSET 3", True)
q("single_agg", "SELECT COUNT(*), COUNT(city), AVG(vip), SUM(vip) FROM t_user", True)
q("single_distinct", "SELECT DISTINCT vip FROM t_user ORDER BY vip", True)
q("single_join_broadcast", "SELECT u.user_id, s.label FROM t_user u JOIN t_status s ON s.rank_no = u.vip "
                           "WHERE u.user_id < 20")
q("single_point", "SELECT * FROM t_user WHERE user_id = 77")

# -- subqueries that stay on one data node or data source ------------------------------------------------------------
q("subquery_in_one_node", f"SELECT order_id FROM t_order WHERE user_id = {_UID1} AND order_id = {_OID1} AND order_id "
                          f"IN (SELECT order_id FROM t_order_item WHERE user_id = {_UID1} AND order_id = {_OID1})")
q("subquery_exists_one_node", f"SELECT o.order_id FROM t_order o WHERE o.user_id = {_UID2} AND o.order_id = {_OID2} "
                              "AND EXISTS (SELECT 1 FROM t_order_item i WHERE i.order_id = o.order_id "
                              f"AND i.user_id = {_UID2} AND i.order_id = {_OID2})")
q("subquery_scalar_one_node", f"SELECT order_id, (SELECT COUNT(*) FROM t_order_item i WHERE i.user_id = {_UID3} "
                              f"AND i.order_id = {_OID3}) AS items FROM t_order WHERE user_id = {_UID3} "
                              f"AND order_id = {_OID3}")
q("subquery_derived_aggregate_one_node", f"SELECT COUNT(*), SUM(a) FROM (SELECT qty AS a FROM t_order_item "
                                         f"WHERE user_id = {_UID3} AND order_id = {_OID3}) d", True)
q("subquery_derived_one_node", f"SELECT d.order_id FROM (SELECT order_id, amount FROM t_order WHERE user_id = {_UID1} "
                               f"AND order_id = {_OID1}) d")
q("subquery_any_broadcast", "SELECT COUNT(*) FROM t_order WHERE user_id = 10 AND status = ANY "
                              "(SELECT status FROM t_status)", True)

# -- autoTable t_log (MOD over 4 tables) -----------------------------------------------------------------------------
q("log_all", "SELECT * FROM t_log")
q("log_point", "SELECT * FROM t_log WHERE log_id = 1234")
q("log_point_in", "SELECT log_id, level FROM t_log WHERE log_id IN (1, 2, 3, 4, 5, 2999)")
q("log_range_small", "SELECT log_id FROM t_log WHERE log_id BETWEEN 100 AND 101")
q("log_range_wide", "SELECT log_id, code FROM t_log WHERE log_id BETWEEN 100 AND 400")
q("log_range_open", "SELECT log_id FROM t_log WHERE log_id > 2950")
q("log_order_limit", "SELECT log_id, msg FROM t_log ORDER BY msg, log_id LIMIT 25 OFFSET 10", True)
q("log_group_level", "SELECT level, COUNT(*), COUNT(code), AVG(code) FROM t_log GROUP BY level", ci=True)
q("log_group_level_ordered", "SELECT level, MIN(log_id), MAX(code) FROM t_log GROUP BY level ORDER BY level", True,
  ci=True)
q("log_aggregates", "SELECT COUNT(*), SUM(code), MIN(code), MAX(code), AVG(code), COUNT(DISTINCT msg) FROM t_log",
  True)
q("log_distinct_msg", "SELECT DISTINCT msg FROM t_log", ci=True)
q("log_user_filter", "SELECT log_id, level FROM t_log WHERE user_id = 5 ORDER BY log_id", True)
q("log_having", "SELECT user_id, COUNT(*) FROM t_log GROUP BY user_id HAVING COUNT(*) >= 24")
q("log_code_nulls_order", "SELECT log_id, code FROM t_log ORDER BY code DESC, log_id LIMIT 40", True)
q("log_param_point", "SELECT log_id, msg FROM t_log WHERE log_id = %s", params=(2024,))

# -- statement shapes ------------------------------------------------------------------------------------------------
q("shape_comment", "/* dashboard */ SELECT COUNT(*) FROM t_order WHERE status = 'NEW'", True)
q("shape_backticks_mysql", "SELECT `order_id`, `amount` FROM `t_order` WHERE `user_id` = 18", dialects=("mysql",))
q("shape_quoted_pg", 'SELECT "order_id", "amount" FROM "t_order" WHERE "user_id" = 18', dialects=("postgresql",))
q("shape_uppercase_columns", "SELECT ORDER_ID, Amount FROM t_order WHERE USER_ID = 19 AND Order_Id > 0")
q("shape_schema_qualified_pg", "SELECT order_id FROM public.t_order WHERE user_id = 19", dialects=("postgresql",))
q("shape_cast_pg", "SELECT order_id, amount::text, created::text FROM t_order WHERE user_id = 22",
  dialects=("postgresql",))
q("shape_ilike_pg", "SELECT order_id, note FROM t_order WHERE note ILIKE 'zo%'", dialects=("postgresql",))
q("shape_ifnull_mysql", "SELECT order_id, IFNULL(note, 'none') FROM t_order WHERE user_id = 23", dialects=("mysql",))
q("shape_concat", "SELECT order_id, CONCAT(status, '/', user_id) FROM t_order WHERE user_id = 24")
q("shape_semicolon", "SELECT COUNT(*) FROM t_order_item WHERE qty = 7;", True)
q("shape_in_many", "SELECT order_id FROM t_order WHERE order_id IN ("
                   + ", ".join(str(10_001 + 3 * k) for k in range(0, 3000, 7)) + ")")
q("shape_long_or", "SELECT order_id FROM t_order WHERE " + " OR ".join(f"user_id = {u}" for u in range(60, 75)))
q("shape_not_between", "SELECT COUNT(*) FROM t_order WHERE order_id NOT BETWEEN 11000 AND 39000", True)
q("shape_is_true_filter", "SELECT order_id FROM t_order WHERE (amount > 0) = (priority > 3) AND user_id = 25")
q("shape_date_function_mysql", "SELECT order_id, YEAR(created), MONTH(created) FROM t_order WHERE user_id = 26",
  dialects=("mysql",))
q("shape_date_extract", "SELECT order_id, EXTRACT(YEAR FROM created) FROM t_order WHERE user_id = 26")

# Cases whose answer has no rows on purpose; every other case must return rows on the plain database, or it would
# compare nothing (checked by test_corpus_is_not_vacuous).
EMPTY = {"empty_group_by", "empty_select", "empty_order_limit", "empty_distinct", "point_miss", "point_wrong_user",
         "limit_beyond_end", "limit_zero"}

# -- CHAR and date-time columns -------------------------------------------------------------------------------------
q("char_select", "SELECT order_id, region FROM t_order WHERE user_id = 27")
q("char_filter", "SELECT order_id, region FROM t_order WHERE region = 'EU' AND user_id < 60")
q("char_filter_padded", "SELECT order_id, region FROM t_order WHERE region = 'NA' AND user_id < 60")
q("char_order_limit", "SELECT order_id, region FROM t_order ORDER BY region, order_id LIMIT 40 OFFSET 1500", True)
q("char_order_desc", "SELECT order_id, region FROM t_order WHERE amount > 4000 ORDER BY region DESC, order_id", True)
q("char_order_range", "SELECT region FROM t_order WHERE order_id BETWEEN 20000 AND 20600 ORDER BY region, order_id",
  True)
q("char_group", "SELECT region, COUNT(*), SUM(amount) FROM t_order GROUP BY region", ci=True)
q("char_group_ordered", "SELECT region, COUNT(*) FROM t_order GROUP BY region ORDER BY region", True, ci=True)
q("char_distinct_ordered", "SELECT DISTINCT region FROM t_order ORDER BY region", True, ci=True)
q("char_min_max", "SELECT MIN(region), MAX(region), COUNT(DISTINCT region) FROM t_order", True, ci=True)
q("datetime_select", "SELECT order_id, updated_at FROM t_order WHERE user_id = 28")
q("datetime_order_limit", "SELECT order_id, updated_at FROM t_order ORDER BY updated_at DESC, order_id LIMIT 30", True)
q("datetime_range", "SELECT order_id FROM t_order WHERE updated_at BETWEEN '2024-03-01 06:00:00' "
                    "AND '2024-03-02 18:00:00'")
q("datetime_min_max", "SELECT MIN(updated_at), MAX(updated_at) FROM t_order WHERE status = 'NEW'", True)
q("datetime_group", "SELECT updated_at, COUNT(*) FROM t_order GROUP BY updated_at HAVING COUNT(*) > 1")
q("datetime_cast_group", "SELECT CAST(updated_at AS DATE) AS d, COUNT(*) FROM t_order GROUP BY CAST(updated_at AS DATE) "
                         "ORDER BY d DESC LIMIT 20", True)
q("datetime_distinct", "SELECT DISTINCT updated_at FROM t_order WHERE created = '2024-05-05'")

# -- refusals --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    id: str
    sql: str
    construct: str  # a regular expression the error message must match (case-insensitive)


REFUSED: list[Refused] = [
    # A subquery over sharded tables spanning several data nodes (here two tables on one data source) is refused,
    # even where the binding would make it answerable node by node: dbmesh cannot prove that in general yet.
    Refused("subquery_not_in_one_shard", "SELECT order_id FROM t_order WHERE user_id = 9 AND order_id NOT IN "
                               "(SELECT order_id FROM t_order_item WHERE user_id = 9 AND qty < 3)",
            r"subquer"),
    Refused("subquery_in_one_shard", "SELECT order_id, amount FROM t_order WHERE user_id = 3 AND order_id IN "
                           "(SELECT order_id FROM t_order_item WHERE user_id = 3 AND qty > 5) ORDER BY order_id",
            r"subquer"),
    Refused("nonbound_join_log", "SELECT o.order_id, l.log_id FROM t_order o JOIN t_log l ON l.user_id = o.user_id",
            r"join"),
    Refused("nonbound_join_log_filtered", "SELECT COUNT(*) FROM t_order o JOIN t_log l ON l.log_id = o.order_id "
                                          "WHERE o.user_id = 4", r"join"),
    Refused("correlated_subquery_same_table", "SELECT order_id FROM t_order o WHERE amount > "
                                              "(SELECT AVG(amount) FROM t_order o2 WHERE o2.status = o.status)",
            r"subquer"),
    Refused("correlated_exists_log", "SELECT order_id FROM t_order o WHERE EXISTS "
                                     "(SELECT 1 FROM t_log l WHERE l.user_id = o.user_id AND l.code = 101)",
            r"subquer"),
    Refused("union_orders", "SELECT user_id FROM t_order UNION SELECT user_id FROM t_order_item", r"union"),
    Refused("union_all_log", "SELECT user_id FROM t_order WHERE amount < 0 UNION ALL SELECT user_id FROM t_log",
            r"union"),
    Refused("window_row_number", "SELECT order_id, ROW_NUMBER() OVER (ORDER BY amount, order_id) FROM t_order",
            r"window"),
    Refused("window_sum_partition", "SELECT order_id, SUM(amount) OVER (PARTITION BY status) FROM t_order",
            r"window"),
    Refused("aggregate_plus_one", "SELECT COUNT(*) + 1 FROM t_order", r"aggregate"),
    Refused("aggregate_ratio", "SELECT SUM(amount) / COUNT(*) FROM t_order", r"aggregate"),
    Refused("aggregate_in_function", "SELECT user_id, ROUND(AVG(amount), 1) FROM t_order GROUP BY user_id",
            r"aggregate"),
]
