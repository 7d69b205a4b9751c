// lowbit/nn/budget.hpp: dynamic inference under a compute budget (papers.md section 2): a table
// of configurations measured once, offline, on calibration data (accuracy and the MACs the
// datapath executed), its Pareto front, and the choice at run time of the most accurate
// configuration that fits the budget, whatever the input.
//
//   lowbit::nn::budget_table table;
//   table.add({"attn 6/8 mlp 12/16", 0.8e6, 89.1});
//   auto chosen = table.choose(0.85e6);   // std::nullopt when nothing fits
#pragma once

#include <lowbit/nn/definitions.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace lowbit::nn {

struct budget_entry {
    std::string configuration;
    double macs = 0;      // per sample, counted by the datapath
    double accuracy = 0;  // on the calibration data
};

class budget_table {
public:
    void add(budget_entry e);
    const std::vector<budget_entry>& entries() const { return entries_; }

    // The entries that no other beats (no more MACs and a higher accuracy, or fewer MACs and no
    // lower accuracy), by MACs ascending; of equal ones, the first added.
    std::vector<budget_entry> pareto_front() const;

    // The most accurate configuration whose MACs fit the budget (on ties, the cheapest).
    std::optional<budget_entry> choose(double budget_macs) const;

private:
    std::vector<budget_entry> entries_;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE void budget_table::add(budget_entry e) {
    if (!(e.macs >= 0) || !std::isfinite(e.macs) || !std::isfinite(e.accuracy))
        throw std::invalid_argument("lowbit::nn::budget_table: configuration '" + e.configuration +
                                    "' has macs = " + std::to_string(e.macs) + " and accuracy = " +
                                    std::to_string(e.accuracy) + ": both must be finite, macs >= 0");
    entries_.push_back(std::move(e));
}

LOWBIT_NN_INLINE std::vector<budget_entry> budget_table::pareto_front() const {
    std::vector<budget_entry> sorted = entries_;
    std::stable_sort(sorted.begin(), sorted.end(), [](const budget_entry& a, const budget_entry& b) {
        return a.macs < b.macs || (a.macs == b.macs && a.accuracy > b.accuracy);
    });
    std::vector<budget_entry> front;
    for (const auto& e : sorted)
        if (front.empty() || e.accuracy > front.back().accuracy) front.push_back(e);
    return front;
}

LOWBIT_NN_INLINE std::optional<budget_entry> budget_table::choose(double budget_macs) const {
    std::optional<budget_entry> best;
    for (const auto& e : pareto_front())
        if (e.macs <= budget_macs) best = e;  // the front ascends in MACs and in accuracy
    return best;
}
#endif

// Groups of `group` channels for structured skipping, least important first. Channels are ranked
// by importance within each partition of `partition` consecutive channels (a head: skipping may
// not mix heads; 0: one partition), cut into groups of `group` (an offline permutation of the
// weights puts a group's channels side by side, so a group is one vector of the hardware), and
// the groups are ordered by the sum of their channels' importance.
LOWBIT_NN_INLINE std::vector<std::vector<int>> channel_groups(const std::vector<double>& importance, int group, int partition = 0);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::vector<std::vector<int>> channel_groups(const std::vector<double>& importance, int group, int partition) {
    const int n = int(importance.size());
    if (partition == 0) partition = n;
    if (group < 1 || partition < 1 || n % partition != 0 || partition % group != 0)
        throw std::invalid_argument("lowbit::nn::channel_groups: " + std::to_string(n) + " channels, partition " +
                                    std::to_string(partition) + ", group " + std::to_string(group) +
                                    ": partitions must divide the channels and groups the partitions");
    std::vector<std::vector<int>> groups;
    std::vector<double> sums;
    for (int start = 0; start < n; start += partition) {
        std::vector<int> ranked(static_cast<std::size_t>(partition));
        for (int i = 0; i < partition; ++i) ranked[std::size_t(i)] = start + i;
        std::stable_sort(ranked.begin(), ranked.end(),
                         [&](int a, int b) { return importance[std::size_t(a)] < importance[std::size_t(b)]; });
        for (int g = 0; g < partition; g += group) {
            std::vector<int> members(ranked.begin() + g, ranked.begin() + g + group);
            double sum = 0;
            for (const int c : members) sum += importance[std::size_t(c)];
            std::sort(members.begin(), members.end());
            groups.push_back(std::move(members));
            sums.push_back(sum);
        }
    }
    std::vector<std::size_t> order(groups.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return sums[a] < sums[b]; });
    std::vector<std::vector<int>> out;
    for (const std::size_t i : order) out.push_back(groups[i]);
    return out;
}
#endif

// The channels left, ascending, when the first `skipped` groups of `groups` (channel_groups's
// order) are skipped; `channels` in all. At least one group stays (an empty list would mean "all"
// to set_active).
LOWBIT_NN_INLINE std::vector<int> kept_channels(const std::vector<std::vector<int>>& groups, int skipped, int channels);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::vector<int> kept_channels(const std::vector<std::vector<int>>& groups, int skipped, int channels) {
    if (skipped < 0 || skipped >= int(groups.size()))
        throw std::invalid_argument("lowbit::nn::kept_channels: skipped = " + std::to_string(skipped) +
                                    " is outside [0, " + std::to_string(groups.size()) + "): one group must stay");
    std::vector<bool> keep(std::size_t(channels), true);
    for (int g = 0; g < skipped; ++g)
        for (const int c : groups[std::size_t(g)]) keep.at(std::size_t(c)) = false;
    std::vector<int> out;
    for (int c = 0; c < channels; ++c)
        if (keep[std::size_t(c)]) out.push_back(c);
    return out;
}
#endif

}  // namespace lowbit::nn
