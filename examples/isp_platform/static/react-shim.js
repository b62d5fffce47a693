// `import ... from "react"` without a bundler: React's UMD build (loaded by a classic
// script before this module) sets window.React; the page's import map points "react" here.
const React = window.React;
export default React;
export const { createElement, useCallback, useEffect, useMemo, useRef, useState } = React;
