// lowbit/sparse/planar_tiling.hpp: how SCNN splits an H x W activation plane among a grid of
// processing elements: one rectangular tile per PE, tiles disjoint and covering the plane (the
// "PT" of PT-IS-CP: planar tiling, input stationary).
//
// The paper gives each PE a Wt x Ht tile but does not say how a plane that the grid does not
// divide is split. Here rows (and columns) are dealt as evenly as possible: with H = 13 over 8 PE
// rows, five rows of PEs get 2 rows and three get 1, so no PE is left without work while another
// holds three rows. Planes smaller than the grid leave PEs with empty tiles (they idle).
#pragma once

#include <stdexcept>
#include <string>

namespace lowbit::sparse {

// The half-open range [begin, end) of part `index` when `length` items are dealt to `parts` parts:
// the first length % parts parts get one item more.
struct index_range {
    int begin = 0, end = 0;
    int size() const { return end - begin; }
};

inline index_range even_split(int length, int parts, int index) {
    if (length < 0 || parts < 1 || index < 0 || index >= parts)
        throw std::invalid_argument("lowbit::sparse::even_split: length = " + std::to_string(length) + ", parts = " +
                                    std::to_string(parts) + ", index = " + std::to_string(index) +
                                    ": need length >= 0, parts >= 1, 0 <= index < parts");
    const int base = length / parts, extra = length % parts;
    const int begin = index * base + (index < extra ? index : extra);
    return {begin, begin + base + (index < extra ? 1 : 0)};
}

struct planar_tile {
    index_range rows, cols;
    int size() const { return rows.size() * cols.size(); }
};

// The tile of PE (pe_row, pe_col) in a grid of grid_rows x grid_cols PEs over an H x W plane.
inline planar_tile tile_of(int H, int W, int grid_rows, int grid_cols, int pe_row, int pe_col) {
    return {even_split(H, grid_rows, pe_row), even_split(W, grid_cols, pe_col)};
}

}  // namespace lowbit::sparse
