// examples/gnuplot.hpp: rendering an example's plots. The example writes its data files and a
// gnuplot script; gnuplot draws the PNGs. Without gnuplot the run still succeeds (its results
// are in the data files), and says so.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace examples {

// Runs gnuplot on `script`; false (after saying where the data is) when it fails.
inline bool render_plots(const std::string& script, const std::string& data_folder) {
    const std::string command = "gnuplot '" + script + "'";
    if (std::system(command.c_str()) == 0) return true;
    std::fprintf(stderr, "gnuplot failed on %s (Debian: apt-get install gnuplot-nox); the data is in %s\n",
                 script.c_str(), data_folder.c_str());
    return false;
}

}  // namespace examples
