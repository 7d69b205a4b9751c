// lowbit/nn/budget.hpp: the Pareto front keeps exactly the configurations no other beats, choose
// returns the most accurate one that fits (nothing when none fits), and channel groups are ranked
// by importance within their partitions (never across a head), least important first.
#include <lowbit/nn/budget.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using lowbit::nn::budget_table;

TEST_CASE("budget_table: Pareto front and choose") {
    budget_table t;
    t.add({"dense", 100, 90.0});
    t.add({"a", 80, 89.5});
    t.add({"b", 80, 88.0});   // same MACs as a, less accurate: dominated
    t.add({"c", 85, 89.0});   // more MACs than a and less accurate: dominated
    t.add({"d", 50, 80.0});
    t.add({"e", 95, 90.5});   // cheaper than dense and more accurate: dense is dominated
    std::vector<std::string> front;
    for (const auto& e : t.pareto_front()) front.push_back(e.configuration);
    CHECK(front == std::vector<std::string>{"d", "a", "e"});
    CHECK(t.choose(100)->configuration == "e");
    CHECK(t.choose(94)->configuration == "a");
    CHECK(t.choose(50)->configuration == "d");
    CHECK_FALSE(t.choose(49.9).has_value());
    CHECK_THROWS_WITH(t.add({"bad", -1, 50}), Catch::Contains("'bad' has macs = -1"));
}

TEST_CASE("channel_groups: least important first, within partitions") {
    const std::vector<double> importance{5, 1, 7, 2, 8, 0.5, 3, 9};
    // one partition, groups of 2, by importance: 5 (0.5), 1 (1) | 3 (2), 6 (3) | 0 (5), 2 (7) | 4 (8), 7 (9)
    const auto g = lowbit::nn::channel_groups(importance, 2);
    CHECK(g == std::vector<std::vector<int>>{{1, 5}, {3, 6}, {0, 2}, {4, 7}});
    // two partitions (heads) of 4: groups never mix them
    const auto h = lowbit::nn::channel_groups(importance, 2, 4);
    CHECK(h == std::vector<std::vector<int>>{{1, 3}, {5, 6}, {0, 2}, {4, 7}});
    CHECK(lowbit::nn::kept_channels(h, 2, 8) == std::vector<int>{0, 2, 4, 7});
    CHECK_THROWS_WITH(lowbit::nn::kept_channels(h, 4, 8), Catch::Contains("one group must stay"));
    CHECK_THROWS_WITH(lowbit::nn::channel_groups(importance, 3), Catch::Contains("8 channels, partition 8, group 3"));
}
